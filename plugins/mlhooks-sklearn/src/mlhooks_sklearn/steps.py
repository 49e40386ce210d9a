"""Step-wise curves a fitted estimator keeps: each point logged at its iteration."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlhooks.plugin import FitSession

# attribute -> metric key; GradientBoosting's ``train_score_`` is a loss (below)
CURVES = {
    "loss_curve_": "loss",  # MLPClassifier/MLPRegressor
    "validation_scores_": "validation_score",  # MLP with early_stopping
    "validation_score_": "validation_score",  # HistGradientBoosting
    "oob_scores_": "oob_loss",  # GradientBoosting with subsample < 1
}
FINAL = {"best_loss_": "best_loss", "oob_score_": "oob_score"}


def log_curves(session: FitSession, model: Any) -> None:
    """Every curve of ``model``, then its final figures (``n_iter``, ``best_loss``...).

    The curves' iterations are reported as epochs (``on_epoch_end``, epoch = step =
    the index in the curve), in order, each with every curve's value at it: scikit-learn
    records them during ``fit``, so they reach listeners once ``fit`` returned."""
    model = final_estimator(model)
    curves = dict(CURVES)
    if hasattr(model, "train_score_"):
        # HistGradientBoosting: scores (index 0 is before the first iteration);
        # GradientBoosting: the training loss of each stage.
        hist = hasattr(model, "validation_score_")
        curves["train_score_"] = "train_score" if hist else "train_loss"
    iterations: dict[int, dict[str, float]] = {}
    for attribute, key in curves.items():
        for step, point in enumerate(curve(getattr(model, attribute, None)) or ()):
            iterations.setdefault(step, {})[key] = point
    for step in sorted(iterations):
        session.epoch_end(step, iterations[step])
    finals: dict[str, float] = {}
    for attribute, key in {"n_iter_": "n_iter", **FINAL}.items():
        value = _number(getattr(model, attribute, None))
        if value is not None:
            finals[key] = value
    if finals:
        session.log_metrics(finals)


def final_estimator(model: Any) -> Any:
    """The estimator whose curves a fit has: a pipeline's last step (nested ones
    too), else ``model``."""
    seen = 0
    while hasattr(model, "steps") and isinstance(model.steps, list) and model.steps and seen < 10:
        last = model.steps[-1]
        if not (isinstance(last, tuple) and len(last) == 2):
            break
        model = last[1]
        seen += 1
    return model


def curve(value: Any) -> list[float] | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or array.size == 0:
        return None
    return [float(v) for v in array]


def _number(value: Any) -> float | None:
    """A number, or the largest of an array of them (``n_iter_`` per class)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if array.size == 0:
        return None
    return float(array.max())
