"""Boosting rounds reach listeners as ``on_epoch_end`` events, from ``xgboost.train``,
``xgboost.cv`` and the scikit-learn API, each stored once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import history, only_run
from mlhooks.testing.contract import EventLog

pytestmark = pytest.mark.usefixtures("autolog")

PARAMS = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 2, "nthread": 1}


@pytest.fixture
def events(mlhooks_plugin: Any) -> EventLog:
    log = EventLog()
    mlhooks_plugin(log, name="events")
    return log


def rounds(events: EventLog) -> list[tuple[int, int]]:
    (fit,) = events.fits()  # one fit, each round inside it
    assert all(epoch.fit is fit for epoch in events.epochs())
    return [(epoch.epoch, epoch.step) for epoch in events.epochs()]


def test_train_reports_each_round_with_its_values_stored_once(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    dtrain = xgb.DMatrix(data["X"], label=data["y"])
    dvalid = xgb.DMatrix(data["X_valid"], label=data["y_valid"])
    evals_result: dict[str, Any] = {}
    xgb.train(
        PARAMS, dtrain, 5, evals=[(dvalid, "valid")], evals_result=evals_result,
        verbose_eval=False,
    )  # fmt: skip
    assert rounds(events) == [(r, r) for r in range(5)]
    reported = [epoch.metrics["valid-logloss"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, evals_result["valid"]["logloss"])
    stored = history(client, only_run(client), "valid-logloss")
    assert [step for step, _ in stored] == list(range(5))  # once each, not twice
    np.testing.assert_allclose([value for _, value in stored], reported, rtol=1e-6)


def test_rounds_without_eval_sets_still_reach_listeners(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    xgb.train(PARAMS, xgb.DMatrix(data["X"], label=data["y"]), 3)
    assert rounds(events) == [(0, 0), (1, 1), (2, 2)]
    assert all(epoch.metrics == {} for epoch in events.epochs())
    assert only_run(client).data.metrics == {}


def test_cv_reports_each_round_with_mean_and_std(data: dict[str, Any], events: EventLog) -> None:
    results = xgb.cv(
        PARAMS, xgb.DMatrix(data["X"], label=data["y"]), num_boost_round=4, nfold=3, seed=1,
        as_pandas=False,
    )  # fmt: skip
    assert rounds(events) == [(r, r) for r in range(4)]
    reported = [epoch.metrics["test-logloss-mean"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, results["test-logloss-mean"], rtol=1e-6)


def test_the_sklearn_api_reports_each_round_of_its_fit(
    data: dict[str, Any], events: EventLog
) -> None:
    model = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1)
    model.fit(data["X"], data["y"], eval_set=[(data["X_valid"], data["y_valid"])], verbose=False)
    assert rounds(events) == [(r, r) for r in range(4)]
    (fit,) = events.fits()
    assert fit.name == "XGBClassifier"
    reported = [epoch.metrics["validation_0-logloss"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, model.evals_result()["validation_0"]["logloss"])


def test_log_every_n_steps_reports_the_rounds_it_stores(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    mlhooks.autolog(log_every_n_steps=4)
    dtrain = xgb.DMatrix(data["X"], label=data["y"])
    xgb.train(PARAMS, dtrain, 10, evals=[(dtrain, "train")], verbose_eval=False)
    assert [epoch for epoch, _ in rounds(events)] == [0, 4, 8, 9]
    assert [s for s, _ in history(client, only_run(client), "train-logloss")] == [0, 4, 8, 9]
