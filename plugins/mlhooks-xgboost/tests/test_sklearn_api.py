"""XGBoost's scikit-learn API: one run per fit (the inner ``train`` is not a second one),
with the estimator's params, every round of every eval set, early stopping and the
fitted estimator as the model."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import history, only_run

pytestmark = pytest.mark.usefixtures("autolog")

BOOSTED = [
    (xgb.XGBClassifier, "y", ["logloss", "error"]),
    (xgb.XGBRegressor, "target", ["rmse", "mae"]),
]


def regression_target(data: dict[str, Any], split: str) -> np.ndarray:
    X = data["X" if split == "train" else "X_valid"]
    return X[:, 0] * 2.0 - X[:, 1]


@pytest.mark.parametrize(("klass", "label", "metrics"), BOOSTED, ids=lambda v: str(v))
def test_boosted_estimators_with_eval_sets_and_early_stopping(
    client: MlflowClient, data: dict[str, Any], klass: type, label: str, metrics: list[str]
) -> None:
    y = data["y"] if label == "y" else regression_target(data, "train")
    y_valid = data["y_valid"] if label == "y" else regression_target(data, "valid")
    model = klass(
        n_estimators=200, max_depth=6, learning_rate=0.9, early_stopping_rounds=4,
        eval_metric=metrics, n_jobs=1,
    )  # fmt: skip
    before = copy.deepcopy(model.get_params())
    model.fit(data["X"], y, eval_set=[(data["X"], y), (data["X_valid"], y_valid)], verbose=False)
    assert model.get_params() == before  # the estimator itself is not changed
    run = only_run(client)
    assert run.info.run_name == klass.__name__
    results = model.evals_result()
    stopped = model.get_booster().num_boosted_rounds() - 1
    assert stopped < 199, "the fixture data must make training stop early"
    for eval_name in ("validation_0", "validation_1"):
        for metric in metrics:
            points = history(client, run, f"{eval_name}-{metric}")
            assert [s for s, _ in points] == list(range(stopped + 1))
            np.testing.assert_allclose([v for _, v in points], results[eval_name][metric])
    params = run.data.params
    assert params["n_estimators"] == "200" and params["max_depth"] == "6"
    assert params["num_boost_round"] == "200" and params["early_stopping_rounds"] == "4"
    assert "callbacks" not in params and "eval_set" not in params
    assert run.data.metrics["best_iteration"] == model.best_iteration
    assert run.data.metrics["best_score"] == pytest.approx(model.best_score)
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation_0", "validation_1"}
    assert inputs["validation_1"].dataset.digest == mlhooks.fingerprint(data["X_valid"]).digest
    loaded = mlflow.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    assert type(loaded) is klass
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), model.predict(data["X_test"]))


def test_ranker_with_eval_set_and_early_stopping(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    qid = np.repeat(np.arange(40), 10)
    qid_valid = np.repeat(np.arange(10), 10)
    relevance = np.clip((data["X"][:, 0] * 2).round(), 0, 3).astype(int)
    relevance_valid = np.clip((data["X_valid"][:, 0] * 2).round(), 0, 3).astype(int)
    ranker = xgb.XGBRanker(
        n_estimators=30, early_stopping_rounds=3, eval_metric="ndcg@5", n_jobs=1
    ).fit(
        data["X"], relevance, qid=qid, eval_set=[(data["X_valid"], relevance_valid)],
        eval_qid=[qid_valid], verbose=False,
    )  # fmt: skip
    run = only_run(client)
    assert run.info.run_name == "XGBRanker"
    expected = ranker.evals_result()["validation_0"]["ndcg@5"]
    # Store keys allow no '@': the plugin names it 'ndcg_at_5', as MLflow's autolog does
    keys = [k for k in run.data.metrics if k.startswith("validation_0-ndcg")]
    assert keys == ["validation_0-ndcg_at_5"]
    points = history(client, run, keys[0])
    np.testing.assert_allclose([v for _, v in points], expected)
    assert run.data.metrics["best_iteration"] == ranker.best_iteration


@pytest.mark.parametrize("klass", [xgb.XGBRFClassifier, xgb.XGBRFRegressor])
def test_random_forests_with_an_eval_set(
    client: MlflowClient, data: dict[str, Any], klass: type
) -> None:
    y = data["y"] if klass is xgb.XGBRFClassifier else regression_target(data, "train")
    y_valid = data["y_valid"] if klass is xgb.XGBRFClassifier else regression_target(data, "valid")
    model = klass(n_estimators=8, max_depth=3, n_jobs=1)
    model.fit(data["X"], y, eval_set=[(data["X_valid"], y_valid)], verbose=False)
    run = only_run(client)  # XGBRFClassifier.fit calls XGBClassifier.fit: still one run
    assert run.info.run_name == klass.__name__
    assert run.data.params["n_estimators"] == "8"
    (metric,) = model.evals_result()["validation_0"]
    points = history(client, run, f"validation_0-{metric}")
    assert [s for s, _ in points] == [0]  # a random forest is one boosting round
    assert points[0][1] == pytest.approx(model.evals_result()["validation_0"][metric][0])
    loaded = mlflow.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), model.predict(data["X_test"]))


def test_estimator_callbacks_still_run_and_are_not_replaced(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    rounds: list[int] = []

    class Count(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            rounds.append(epoch)
            return False

    callbacks = [Count()]
    model = xgb.XGBClassifier(n_estimators=6, callbacks=callbacks, n_jobs=1)
    model.fit(data["X"], data["y"], eval_set=[(data["X_valid"], data["y_valid"])], verbose=False)
    assert rounds == list(range(6))
    assert model.callbacks is callbacks and len(callbacks) == 1
    assert len(history(client, only_run(client), "validation_0-logloss")) == 6


def test_a_fit_without_eval_set_logs_params_and_model(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    model = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(data["X"], data["y"])
    run = only_run(client)
    assert run.data.params["n_estimators"] == "5"
    loaded = mlflow.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), model.predict(data["X_test"]))


def test_feature_importance_of_an_estimator_is_its_boosters(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    """Built from the logged estimator's bytes, in the background."""
    model = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(data["X"], data["y"])
    run = only_run(client)
    local = client.download_artifacts(run.info.run_id, "feature_importance", str(tmp_path))
    for kind in ("gain", "weight", "cover"):
        scores = json.loads((Path(local) / f"{kind}.json").read_text())
        assert scores == pytest.approx(model.get_booster().get_score(importance_type=kind))


def test_with_the_sklearn_plugin_an_xgboost_estimator_is_one_run(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    """mlhooks-sklearn patches only classes defined in sklearn.*: no double logging."""
    pytest.importorskip("mlhooks_sklearn", reason="mlhooks-sklearn is not installed")
    assert "sklearn" in mlhooks._host.integrations
    xgb.XGBClassifier(n_estimators=4, n_jobs=1).fit(
        data["X"], data["y"], eval_set=[(data["X_valid"], data["y_valid"])], verbose=False
    )
    run = only_run(client)
    assert run.data.tags["mlhooks.framework"] == "xgboost"
    assert run.data.params["n_estimators"] == "4"
    assert len(history(client, run, "validation_0-logloss")) == 4
