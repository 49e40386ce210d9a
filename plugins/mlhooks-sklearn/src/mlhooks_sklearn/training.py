"""Metrics of a fitted model on its training data, chosen by its task."""

from __future__ import annotations

from typing import Any

from mlhooks.plugin import FitSession

from . import metrics
from .options import options_of


def log_training_metrics(
    session: FitSession, model: Any, X: Any, y: Any, step: int = 0
) -> tuple[Any, Any, Any] | None:
    """Metrics of ``model`` on its training data, by task, at ``step``. Returns
    (predictions, probabilities, classes) of a classifier, for plots; else None."""
    if X is None or not options_of(session).log_training_metrics:
        return None
    kind = metrics.task(model)
    outcome = None
    values: dict[str, float] = {}
    if kind == "classifier" and y is not None:
        predicted = _call(model, "predict", X)
        proba = _call(model, "predict_proba", X)
        classes = getattr(model, "classes_", None)
        if predicted is not None:
            values = metrics.classification(y, predicted, proba, classes)
            values["training_score"] = _score(model, X, y, values, "training_accuracy_score")
            outcome = (predicted, proba, classes)
    elif kind == "regressor" and y is not None:
        predicted = _call(model, "predict", X)
        if predicted is not None:
            values = metrics.regression(y, predicted)
            values["training_score"] = _score(model, X, y, values, "training_r2_score")
    elif kind == "clusterer":
        labels = getattr(model, "labels_", None)
        if labels is None:
            labels = _call(model, "predict", X)
        values = metrics.clustering(model, X, labels)
    session.log_metrics({k: v for k, v in values.items() if v is not None}, step=step)
    return outcome


def _call(model: Any, method: str, X: Any) -> Any:
    """``model.<method>(X)``, or None when the model does not offer it or cannot do it
    on this data (that is the model's business, not a tracking failure)."""
    function = getattr(model, method, None)
    if function is None:
        return None
    try:
        return function(X)
    except Exception:  # noqa: BLE001 - e.g. a pipeline whose last step cannot predict
        return None


def _score(model: Any, X: Any, y: Any, values: dict[str, float], default_key: str) -> Any:
    """The model's ``score``: the metric already computed when the model uses the
    default (accuracy for classifiers, R2 for regressors), else its own."""
    if _uses_default_score(model):
        return values.get(default_key)
    try:
        return float(model.score(X, y))
    except Exception:  # noqa: BLE001 - a score that cannot be computed here
        return None


def _uses_default_score(model: Any) -> bool:
    from sklearn.base import ClassifierMixin, RegressorMixin

    while _is_pipeline(model):  # a pipeline scores with its last step
        model = model.steps[-1][1]
    return getattr(type(model), "score", None) in (ClassifierMixin.score, RegressorMixin.score)


def _is_pipeline(model: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(model, Pipeline)
