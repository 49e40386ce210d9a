"""``cross_validate`` and ``cross_val_score``: one run with per-fold and mean scores
(the folds' own fits, nested inside, are not tracked on their own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlhooks.plugin import Call, CallHandler, FitSession

from . import data, nesting
from .sessions import FRAMEWORK, log_training_data, params_of, tags_of

_ESTIMATOR = ("estimator",)
_OPTIONS = ("cv", "scoring", "groups")


class CrossValidation(CallHandler):
    def before(self, call: Call) -> None:
        estimator = data.argument(call, 0, _ESTIMATOR)
        function = getattr(call.wrapped, "__name__", "cross_validate")
        params = params_of(estimator)
        for option in _OPTIONS[:2]:
            if call.kwargs.get(option) is not None:
                params[option] = call.kwargs[option]
        tags = {**tags_of(estimator), "mlhooks.sklearn.cross_validation": function}
        session = FitSession(
            FRAMEWORK, f"{type(estimator).__name__} {function}", params=params, tags=tags
        )
        call.state["session"] = session
        session.start()
        if not session.active:
            return
        nesting.enter()
        try:
            X = data.argument(call, 1, ("X",))
            y = data.argument(call, 2, ("y",))
            log_training_data(session, X, y)
        except BaseException:
            nesting.leave()
            session.end()
            raise

    def after(self, call: Call, result: Any) -> None:
        session: FitSession = call.state["session"]
        if not session.active:
            return
        try:
            scores = result if isinstance(result, Mapping) else {"test_score": result}
            log_folds(session, scores)
        finally:
            nesting.leave()
            session.end()

    def failed(self, call: Call, error: BaseException) -> None:
        session: FitSession = call.state["session"]
        if session.active:
            nesting.leave()
        session.end(error)


def log_folds(session: FitSession, scores: Mapping[str, Any]) -> None:
    """Each numeric array per fold (step = fold), then its mean and std."""
    for key, values in scores.items():
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            continue  # estimators, indices
        if array.ndim != 1 or array.size == 0:
            continue
        for fold, value in enumerate(array):
            session.log_metrics({key: value}, step=fold)
        session.log_metrics({f"mean_{key}": array.mean(), f"std_{key}": array.std()})
