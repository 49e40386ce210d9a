"""The core's shared safety contract and import/patch/unpatch orders, on real XGBoost."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from mlhooks.testing.contract import IntegrationContract
from mlhooks_xgboost import callback


def _matrix() -> xgb.DMatrix:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return xgb.DMatrix(X, label=X[:, 0] > 0)


class TestXGBoostContract(IntegrationContract):
    framework = "xgboost"
    modules = ("xgboost",)
    targets = (
        "xgboost:train",  # what fit() calls
        "xgboost.training:train",
        "xgboost.sklearn:train",
        "xgboost:cv",
        "xgboost.training:cv",
        "xgboost.sklearn:XGBModel.fit",
        "xgboost.sklearn:XGBClassifier.fit",
        "xgboost.sklearn:XGBRanker.fit",
        "xgboost.sklearn:XGBRFClassifier.fit",
        "xgboost.sklearn:XGBRFRegressor.fit",
        "xgboost.core:DMatrix.__init__",
        "xgboost.core:QuantileDMatrix.__init__",
    )
    fit_code = """
        import numpy as np, xgboost as xgb
        X = np.random.default_rng(0).normal(size=(60, 3))
        d = xgb.DMatrix(X, label=X[:, 0] > 0)
        xgb.train({"nthread": 1}, d, 3, evals=[(d, "train")], verbose_eval=False)
        xgb.XGBRegressor(n_estimators=2, n_jobs=1).fit(X, X[:, 1])
    """
    emits_epochs = True  # each boosting round

    def fit_epochs(self) -> int:
        d = _matrix()
        xgb.train({"nthread": 1}, d, 5, evals=[(d, "train")], verbose_eval=False)
        return 5

    def fit(self) -> Any:
        d = _matrix()
        booster = xgb.train(
            {"nthread": 1, "objective": "binary:logistic"}, d, 4, evals=[(d, "train")],
            verbose_eval=False,
        )  # fmt: skip
        return booster.predict(d).tolist()

    def fit_raising(self, error: BaseException) -> None:
        class Raising(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                if epoch == 1:
                    raise error
                return False

        d = _matrix()
        xgb.train({"nthread": 1}, d, 4, evals=[(d, "train")], callbacks=[Raising()],
                  verbose_eval=False)  # fmt: skip

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(*args: Any) -> dict[str, float]:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(callback.RoundLogger, "round_metrics", broken)
