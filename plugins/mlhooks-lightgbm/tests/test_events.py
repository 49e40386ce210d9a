"""Boosting iterations reach listeners as ``on_epoch_end`` events, from
``lightgbm.train``, ``lightgbm.cv`` and the scikit-learn API, each stored once."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import QUIET, history, only_run
from mlhooks.testing.contract import EventLog

pytestmark = pytest.mark.usefixtures("autolog")

PARAMS = {"objective": "binary", "metric": "binary_logloss", "num_leaves": 3, **QUIET}


@pytest.fixture
def events(mlhooks_plugin: Any) -> EventLog:
    log = EventLog()
    mlhooks_plugin(log, name="events")
    return log


def iterations(events: EventLog) -> list[tuple[int, int]]:
    (fit,) = events.fits()  # one fit, each iteration inside it
    assert all(epoch.fit is fit for epoch in events.epochs())
    return [(epoch.epoch, epoch.step) for epoch in events.epochs()]


def test_train_reports_each_iteration_with_its_values_stored_once(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    train = lgb.Dataset(data["X"], label=data["y"])
    valid = lgb.Dataset(data["X_valid"], label=data["y_valid"], reference=train)
    recorded: dict[str, Any] = {}
    lgb.train(PARAMS, train, 5, valid_sets=[valid], valid_names=["valid"],
              callbacks=[lgb.record_evaluation(recorded)])  # fmt: skip
    assert iterations(events) == [(i, i) for i in range(5)]
    reported = [epoch.metrics["valid-binary_logloss"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, recorded["valid"]["binary_logloss"])
    stored = history(client, only_run(client), "valid-binary_logloss")
    assert [step for step, _ in stored] == list(range(5))  # once each, not twice
    np.testing.assert_allclose([value for _, value in stored], reported, rtol=1e-9)


def test_iterations_without_validation_sets_still_reach_listeners(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    lgb.train(PARAMS, lgb.Dataset(data["X"], label=data["y"]), 3)
    assert iterations(events) == [(0, 0), (1, 1), (2, 2)]
    assert all(epoch.metrics == {} for epoch in events.epochs())
    assert only_run(client).data.metrics == {}


def test_cv_reports_each_iteration_with_mean_and_stdv(
    data: dict[str, Any], events: EventLog
) -> None:
    results = lgb.cv(PARAMS, lgb.Dataset(data["X"], label=data["y"]), 4, nfold=3, seed=1)
    assert iterations(events) == [(i, i) for i in range(4)]
    reported = [epoch.metrics["valid-binary_logloss-stdv"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, results["valid binary_logloss-stdv"], rtol=1e-9)


def test_the_sklearn_api_reports_each_iteration_of_its_fit(
    data: dict[str, Any], events: EventLog
) -> None:
    model = lgb.LGBMClassifier(n_estimators=4, num_leaves=3, **QUIET)
    model.fit(data["X"], data["y"], eval_X=data["X_valid"], eval_y=data["y_valid"])
    assert iterations(events) == [(i, i) for i in range(4)]
    (fit,) = events.fits()
    assert fit.name == "LGBMClassifier" and fit.framework == "lightgbm"
    reported = [epoch.metrics["valid_0-binary_logloss"] for epoch in events.epochs()]
    np.testing.assert_allclose(reported, model.evals_result_["valid_0"]["binary_logloss"])


def test_log_every_n_steps_reports_the_iterations_it_stores(
    client: MlflowClient, data: dict[str, Any], events: EventLog
) -> None:
    mlhooks.autolog(log_every_n_steps=4)
    train = lgb.Dataset(data["X"], label=data["y"])
    lgb.train(PARAMS, train, 10, valid_sets=[train], valid_names=["train"])
    assert [epoch for epoch, _ in iterations(events)] == [0, 4, 8, 9]
    assert [s for s, _ in history(client, only_run(client), "train-binary_logloss")] == [0, 4, 8, 9]
