"""The core's shared safety and import/patch/unpatch ordering tests, on scikit-learn."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mlhooks.testing.contract import IntegrationContract

X, Y = load_diabetes(return_X_y=True)


class TestSklearnContract(IntegrationContract):
    framework = "sklearn"
    modules = ("sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing")
    targets = (
        "sklearn.linear_model._ridge:Ridge.fit",
        "sklearn.pipeline:Pipeline.fit",
        "sklearn.base:TransformerMixin.fit_transform",
        "sklearn.linear_model._base:LinearModel.predict",
    )
    fit_code = "from sklearn.linear_model import Ridge; Ridge().fit([[0.], [1.]], [0., 1.])"
    emits_epochs = True  # each partial_fit call is a step of its estimator's loop

    def fit(self) -> Any:
        from sklearn.linear_model import Ridge

        return tuple(Ridge(alpha=0.5).fit(X, Y).coef_)

    def fit_epochs(self) -> int:
        _partial_fit_loop(batches=4)
        gc.collect()  # the loop's run ends when its estimator goes
        return 4

    def fit_raising(self, error: BaseException) -> None:
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        def users_step(data: Any) -> Any:
            raise error

        Pipeline([("users", FunctionTransformer(users_step)), ("ridge", Ridge())]).fit(X, Y)

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from mlhooks_sklearn import sessions

        def boom(model: Any) -> dict[str, Any]:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(sessions, "params_of", boom)

    def same_result(self, first: Any, second: Any) -> bool:
        return bool(np.array_equal(first, second))


def _partial_fit_loop(batches: int) -> None:
    """An MLP trained batch by batch: a step per call, with its loss."""
    from sklearn.neural_network import MLPRegressor

    model = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    for rows in np.array_split(np.arange(len(Y)), batches):
        model.partial_fit(X[rows], Y[rows] / Y.max())
