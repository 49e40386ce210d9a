"""The core's shared safety contract and import/patch/unpatch orders, on real LightGBM."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from mlhooks.testing.contract import IntegrationContract
from mlhooks_lightgbm import callback

PARAMS = {"objective": "binary", "num_leaves": 3, "verbose": -1, "num_threads": 1}


def _dataset() -> lgb.Dataset:
    X = np.random.default_rng(0).normal(size=(80, 3))
    return lgb.Dataset(X, label=X[:, 0] > 0)


class TestLightGBMContract(IntegrationContract):
    framework = "lightgbm"
    modules = ("lightgbm",)
    targets = (
        "lightgbm:train",  # what fit() calls
        "lightgbm.engine:train",
        "lightgbm.sklearn:train",
        "lightgbm:cv",
        "lightgbm.engine:cv",
        "lightgbm.sklearn:LGBMModel.fit",
        "lightgbm.sklearn:LGBMClassifier.fit",
        "lightgbm.sklearn:LGBMRegressor.fit",
        "lightgbm.sklearn:LGBMRanker.fit",
        "lightgbm.basic:Dataset.__init__",
    )
    fit_code = """
        import numpy as np, lightgbm as lgb
        X = np.random.default_rng(0).normal(size=(80, 3))
        d = lgb.Dataset(X, label=X[:, 0] > 0)
        lgb.train({"verbose": -1, "num_threads": 1}, d, 3, valid_sets=[d])
        lgb.LGBMRegressor(n_estimators=2, verbose=-1, num_threads=1).fit(X, X[:, 1])
    """
    emits_epochs = True  # each boosting iteration

    def fit_epochs(self) -> int:
        d = _dataset()
        lgb.train(PARAMS, d, 5, valid_sets=[d])
        return 5

    def fit(self) -> Any:
        d = _dataset()
        booster = lgb.train(PARAMS, d, 4, valid_sets=[d])
        return booster.predict(np.eye(3)).tolist()

    def fit_raising(self, error: BaseException) -> None:
        def raising(env: Any) -> None:
            if env.iteration == 1:
                raise error

        d = _dataset()
        lgb.train(PARAMS, d, 4, valid_sets=[d], callbacks=[raising])

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(*args: Any) -> dict[str, float]:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(callback.IterationLogger, "metrics", broken)
