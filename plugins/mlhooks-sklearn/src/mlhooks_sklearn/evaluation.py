"""After the fit: evaluation datasets and post-training metrics.

``predict`` (``predict_proba``, ``decision_function``, ...) of a tracked model logs a
fingerprint of its input (context ``eval``) into the model's run, and remembers the
returned array. A ``sklearn.metrics`` function later given that array logs its value
there too, named after the function and the data, as MLflow does:
``accuracy_score_X_test`` (``accuracy_score-2_X_test`` for a second call).
``model.score(X_test, y_test)`` logs ``<Estimator>_score_X_test``.

For any other call, the handlers cost a dictionary lookup.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

import numpy as np

from mlhooks.plugin import Call, CallHandler

from . import data, tracking
from .options import options_of

_NOT_METRICS = {"check_scoring", "get_scorer", "get_scorer_names", "make_scorer"}


def metric_functions(module: ModuleType) -> list[str]:
    """The metric functions of ``sklearn.metrics`` (no classes, plots or scorer tools)."""
    names = []
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name, None)
        if (
            callable(value)
            and not isinstance(value, type)
            and not name.startswith("plot_")
            and name not in _NOT_METRICS
            and name in vars(module)
        ):
            names.append(name)
    return names


def _enabled(record: tracking.ModelRecord) -> bool:
    return options_of(record.session).log_post_training_metrics


class Evaluation(CallHandler):
    """``predict``-like calls and ``score`` on a tracked model."""

    def before(self, call: Call) -> None:
        record = tracking.record_of(call.instance)
        if record is None:
            return
        X = data.features(call)
        if X is None:
            return
        known = record.knows(X)
        name = record.dataset_name(X, data.variable_name(X))
        call.state["eval"] = (record, name)
        if not known:
            record.session.log_dataset(X, name=name, context="eval")

    def after(self, call: Call, result: Any) -> None:
        evaluation = call.state.get("eval")
        if evaluation is None:
            return
        record, name = evaluation
        if getattr(call.wrapped, "__name__", "") == "score":
            if _enabled(record) and _is_number(result):
                key = record.metric_key(f"{type(call.instance).__name__}_score", name)
                record.session.log_metrics({key: result})
        else:
            tracking.predictions.put(result, tracking.Prediction(record, name))


class MetricCall(CallHandler):
    """A ``sklearn.metrics`` function: logged when it was given a tracked prediction."""

    def after(self, call: Call, result: Any) -> None:
        if not _is_number(result):
            return
        for value in (*call.args, *call.kwargs.values()):
            prediction: tracking.Prediction | None = tracking.predictions.get(value)
            if prediction is not None:
                break
        else:
            return
        record = prediction.record
        if _enabled(record):
            key = record.metric_key(getattr(call.wrapped, "__name__", "metric"), prediction.dataset)
            record.session.log_metrics({key: result})


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"
