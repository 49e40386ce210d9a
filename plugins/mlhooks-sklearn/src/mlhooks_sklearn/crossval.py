"""``cross_validate`` and ``cross_val_score``: one run with per-fold and mean scores
(the folds' own fits, nested inside, are not tracked on their own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlhooks.plugin import Call, FitHandler, FitSession

from . import data, nesting
from .sessions import FRAMEWORK, log_training_data, params_of, tags_of

_ESTIMATOR = ("estimator",)
_OPTIONS = ("cv", "scoring", "groups")


class CrossValidation(FitHandler):
    framework = FRAMEWORK

    def new_session(self, call: Call) -> FitSession:
        estimator = data.argument(call, 0, _ESTIMATOR)
        function = getattr(call.wrapped, "__name__", "cross_validate")
        params = params_of(estimator)
        for option in _OPTIONS[:2]:
            if call.kwargs.get(option) is not None:
                params[option] = call.kwargs[option]
        tags = {**tags_of(estimator), "mlhooks.sklearn.cross_validation": function}
        return FitSession(
            FRAMEWORK, f"{type(estimator).__name__} {function}", params=params, tags=tags
        )

    def started(self, session: FitSession, call: Call) -> None:
        X = data.argument(call, 1, ("X",))
        y = data.argument(call, 2, ("y",))
        log_training_data(session, X, y)
        nesting.enter()  # last: nothing to undo if the above raises

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        scores = result if isinstance(result, Mapping) else {"test_score": result}
        log_folds(session, scores)

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        nesting.leave()


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
