"""``xgboost.train`` and ``xgboost.cv`` with real boosters, read back from a real sqlite
MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import history, mlflow_runs, only_run
from mlhooks_mlflow.testing import stored_models

pytestmark = pytest.mark.usefixtures("autolog")

PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": ["logloss", "auc"],
    "max_depth": 3,
    "eta": 0.3,
    "nthread": 1,
}


def matrices(data: dict[str, Any]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    return (
        xgb.DMatrix(data["X"], label=data["y"]),
        xgb.DMatrix(data["X_valid"], label=data["y_valid"]),
    )


def inputs_by_name(run: Any) -> dict[str, tuple[str, str]]:
    """Dataset name -> (digest, context) of an MLflow run's inputs."""
    found = {}
    for dataset_input in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        found[dataset_input.dataset.name] = (
            dataset_input.dataset.digest,
            tags["mlflow.data.context"],
        )
    return found


def test_every_round_of_every_eval_set_and_metric(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain, dvalid = matrices(data)
    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        PARAMS,
        dtrain,
        num_boost_round=50,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=evals_result,
        verbose_eval=False,
    )
    run = only_run(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "xgboost-train"
    for name in ("train", "valid"):
        for metric in ("logloss", "auc"):
            points = history(client, run, f"{name}-{metric}")
            assert [step for step, _ in points] == list(range(50))
            expected = evals_result[name][metric]
            np.testing.assert_allclose([value for _, value in points], expected, rtol=1e-6)
    params = run.data.params
    assert params["max_depth"] == "3" and params["objective"] == "binary:logistic"
    assert params["eval_metric"] == "['logloss', 'auc']"
    assert params["num_boost_round"] == "50" and params["verbose_eval"] == "False"
    assert not {"dtrain", "evals", "callbacks", "evals_result"} & params.keys()
    assert booster.num_boosted_rounds() == 50


def test_datasets_with_contexts_and_eval_names(client: MlflowClient, data: dict[str, Any]) -> None:
    dtrain, dvalid = matrices(data)
    dtest = xgb.DMatrix(data["X_test"], label=data["y_test"])
    xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "holdout"), (dtest, "test")], verbose_eval=False)
    inputs = inputs_by_name(only_run(client))
    assert inputs == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train"),
        "holdout": (mlhooks.fingerprint(data["X_valid"]).digest, "eval"),
        "test": (mlhooks.fingerprint(data["X_test"]).digest, "eval"),
    }


def test_a_quantile_dmatrix_and_a_dataframe(client: MlflowClient, data: dict[str, Any]) -> None:
    frame = pd.DataFrame(data["X"], columns=[f"feature_{i}" for i in range(6)])
    dtrain = xgb.QuantileDMatrix(frame, label=data["y"])
    xgb.train({"nthread": 1}, dtrain, 2, evals=[(dtrain, "train")], verbose_eval=False)
    run = only_run(client)
    assert inputs_by_name(run) == {"train": (mlhooks.fingerprint(frame).digest, "train")}
    assert "feature_0" in run.inputs.dataset_inputs[0].dataset.schema


def test_early_stopping_values_match_the_booster(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain, dvalid = matrices(data)
    params = {**PARAMS, "eta": 0.9, "max_depth": 6}  # overfits fast: stops early
    booster = xgb.train(
        params,
        dtrain,
        200,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=5,
        verbose_eval=False,
    )
    run = only_run(client)
    metrics = run.data.metrics
    stopped = booster.num_boosted_rounds() - 1
    assert stopped < 199, "the fixture data must make training stop early"
    assert metrics["best_iteration"] == booster.best_iteration
    assert metrics["best_score"] == pytest.approx(booster.best_score)
    assert metrics["stopped_iteration"] == stopped
    assert run.data.params["early_stopping_rounds"] == "5"
    # Every trained round was logged, and the best round's values are identifiable.
    valid_auc = history(client, run, "valid-auc")
    assert [step for step, _ in valid_auc] == list(range(stopped + 1))
    best = dict(valid_auc)[booster.best_iteration]
    assert metrics["best.valid-auc"] == pytest.approx(best)
    assert history(client, run, "best.valid-auc")[0][0] == booster.best_iteration


def test_a_custom_metric_is_logged_every_round(client: MlflowClient, data: dict[str, Any]) -> None:
    dtrain, dvalid = matrices(data)

    def error_rate(predt: np.ndarray, dmatrix: xgb.DMatrix) -> tuple[str, float]:
        return "error_rate", float(np.mean((predt > 0.5) != dmatrix.get_label()))

    evals_result: dict[str, Any] = {}
    xgb.train(
        {**PARAMS, "eval_metric": "logloss"},
        dtrain,
        20,
        evals=[(dvalid, "valid")],
        custom_metric=error_rate,
        evals_result=evals_result,
        verbose_eval=False,
    )
    run = only_run(client)
    points = history(client, run, "valid-error_rate")
    assert [step for step, _ in points] == list(range(20))
    np.testing.assert_allclose([v for _, v in points], evals_result["valid"]["error_rate"])
    assert run.data.params["custom_metric"].endswith("error_rate")


def test_user_callbacks_are_called_every_round_in_their_order(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain, dvalid = matrices(data)
    calls: list[tuple[str, int]] = []

    class Recorder(xgb.callback.TrainingCallback):
        def __init__(self, name: str) -> None:
            self.name = name

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            calls.append((self.name, epoch))
            return False

    mine = [Recorder("first"), Recorder("second")]
    given = list(mine)
    xgb.train(PARAMS, dtrain, 5, evals=[(dvalid, "valid")], callbacks=given, verbose_eval=False)
    assert calls == [(name, epoch) for epoch in range(5) for name in ("first", "second")]
    assert given == mine  # the caller's list is untouched
    assert len(history(client, only_run(client), "valid-auc")) == 5


def test_a_callback_that_stops_training_loses_no_round(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain, dvalid = matrices(data)

    class StopAtThree(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return epoch == 3

    xgb.train(
        PARAMS, dtrain, 10, evals=[(dvalid, "valid")], callbacks=[StopAtThree()], verbose_eval=False
    )
    assert [s for s, _ in history(client, only_run(client), "valid-logloss")] == [0, 1, 2, 3]


def test_the_model_reloads_and_predicts_identically(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain, dvalid = matrices(data)
    booster = xgb.train(PARAMS, dtrain, 10, evals=[(dvalid, "valid")], verbose_eval=False)
    run = only_run(client)
    loaded = mlflow.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    dtest = xgb.DMatrix(data["X_test"])
    np.testing.assert_array_equal(loaded.predict(dtest), booster.predict(dtest))


def test_feature_importance_json_and_charts(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    dtrain, _ = matrices(data)
    booster = xgb.train(PARAMS, dtrain, 10)
    run = only_run(client)
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {
        f"feature_importance/{kind}.{ext}"
        for kind in ("gain", "weight", "cover")
        for ext in ("json", "svg")
    }
    local = client.download_artifacts(run.info.run_id, "feature_importance", str(tmp_path))
    gain = json.loads((Path(local) / "gain.json").read_text())
    assert gain == pytest.approx(booster.get_score(importance_type="gain"))
    assert list(gain.values()) == sorted(gain.values(), reverse=True)
    chart = ElementTree.fromstring((Path(local) / "gain.svg").read_text())
    bars = [e for e in chart.iter("{http://www.w3.org/2000/svg}rect")][1:]  # after the background
    assert len(bars) == len(gain)


def test_feature_importance_without_logged_models(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    """With models not logged, importance comes from the booster's own bytes."""
    mlhooks.autolog(log_models=False)
    booster = xgb.train(PARAMS, matrices(data)[0], 10)
    run = only_run(client)
    assert not client.list_artifacts(run.info.run_id, "model")
    local = client.download_artifacts(run.info.run_id, "feature_importance", str(tmp_path))
    gain = json.loads((Path(local) / "gain.json").read_text())
    assert gain == pytest.approx(booster.get_score(importance_type="gain"))


def test_importance_types_are_configurable(client: MlflowClient, data: dict[str, Any]) -> None:
    mlhooks.autolog(xgboost={"importance_types": ["weight"]})
    xgb.train(PARAMS, matrices(data)[0], 3)
    run = only_run(client)
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {"feature_importance/weight.json", "feature_importance/weight.svg"}


@pytest.mark.parametrize(
    ("types", "error", "message"),
    [
        ("gain", TypeError, r"'importance_types' must be a list of str, not 'gain'"),
        (["gian"], ValueError, r"importance_types has 'gian'; XGBoost knows weight, gain"),
    ],
)
def test_importance_types_are_checked_at_autolog(
    types: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=rf"^autolog\(xgboost=\{{\.\.\.\}}\): {message}"):
        mlhooks.autolog(xgboost={"importance_types": types})


def test_checkpoints_are_reported_as_models(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    dtrain, _ = matrices(data)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    checkpoint = xgb.callback.TrainingCheckPoint(folder, name="ckpt", interval=4)
    xgb.train(PARAMS, dtrain, 10, callbacks=[checkpoint])
    saved = sorted(p.stem for p in folder.iterdir())
    assert saved == ["ckpt_4", "ckpt_8"]  # XGBoost's own behaviour, unchanged
    run = only_run(client)
    models = stored_models(client, run.info.run_id)  # logged models with MLflow 3
    logged = {name for name in models if name.startswith("checkpoints/")}
    assert logged == {"checkpoints/ckpt_4", "checkpoints/ckpt_8"}
    reloaded = mlflow.xgboost.load_model(models["checkpoints/ckpt_4"])
    assert reloaded.num_boosted_rounds() == 5
    expected = xgb.Booster(model_file=str(folder / "ckpt_4.ubj"))
    dtest = xgb.DMatrix(data["X_test"])
    np.testing.assert_array_equal(reloaded.predict(dtest), expected.predict(dtest))


def test_cv_logs_mean_and_std_per_round(client: MlflowClient, data: dict[str, Any]) -> None:
    dtrain, _ = matrices(data)
    results = xgb.cv(
        {**PARAMS, "eval_metric": "logloss"},
        dtrain,
        num_boost_round=8,
        nfold=3,
        seed=1,
        as_pandas=False,
    )
    run = only_run(client)
    assert run.info.run_name == "xgboost-cv"
    for key in ("train-logloss-mean", "train-logloss-std", "test-logloss-mean", "test-logloss-std"):
        points = history(client, run, key)
        assert [s for s, _ in points] == list(range(8))
        np.testing.assert_allclose([v for _, v in points], results[key], rtol=1e-6)
    assert run.data.params["nfold"] == "3" and run.data.params["num_boost_round"] == "8"
    assert inputs_by_name(run) == {"train": (mlhooks.fingerprint(data["X"]).digest, "train")}


def test_cv_with_early_stopping(client: MlflowClient, data: dict[str, Any]) -> None:
    dtrain, _ = matrices(data)
    results = xgb.cv(
        {**PARAMS, "eval_metric": "logloss", "eta": 0.9, "max_depth": 6},
        dtrain,
        num_boost_round=200,
        nfold=3,
        early_stopping_rounds=3,
        as_pandas=False,
    )
    run = only_run(client)
    best = len(results["test-logloss-mean"]) - 1  # cv keeps the rounds up to the best
    assert run.data.metrics["best_iteration"] == best
    assert run.data.metrics["best.test-logloss-mean"] == pytest.approx(
        results["test-logloss-mean"][-1]
    )
    stopped = int(run.data.metrics["stopped_iteration"])
    assert stopped > best
    assert len(history(client, run, "test-logloss-mean")) == stopped + 1


def test_log_every_n_steps_keeps_the_last_round(client: MlflowClient, data: dict[str, Any]) -> None:
    mlhooks.autolog(log_every_n_steps=4)
    dtrain, dvalid = matrices(data)
    xgb.train(PARAMS, dtrain, 10, evals=[(dvalid, "valid")], verbose_eval=False)
    assert [s for s, _ in history(client, only_run(client), "valid-auc")] == [0, 4, 8, 9]


def test_a_fit_inside_an_mlflow_run_logs_there(client: MlflowClient, data: dict[str, Any]) -> None:
    dtrain, dvalid = matrices(data)
    with mlflow.start_run(run_name="mine") as mine:
        xgb.train(PARAMS, dtrain, 4, evals=[(dvalid, "valid")], verbose_eval=False)
        assert mlflow.active_run().info.run_id == mine.info.run_id
    assert mlhooks.flush(60)
    run = client.get_run(mine.info.run_id)
    assert len(history(client, run, "valid-auc")) == 4
    assert run.data.params["max_depth"] == "3"


def test_a_failing_objective_fails_the_run_with_the_same_error(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    error = ValueError("bad objective")

    def objective(predt: np.ndarray, dmatrix: xgb.DMatrix) -> Any:
        raise error

    with pytest.raises(ValueError) as raised:
        xgb.train({"nthread": 1}, matrices(data)[0], 3, obj=objective)
    assert raised.value is error
    assert only_run(client).info.status == "FAILED"


def test_disable_restores_train_and_stops_tracking(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    mlhooks.autolog(disable=True)
    assert xgb.train is xgb.training.train
    assert vars(xgb.training)["train"].__module__ == "xgboost.training"
    assert xgb.sklearn.train is xgb.training.train
    xgb.train(PARAMS, matrices(data)[0], 2)
    assert mlflow_runs(client) == []


def test_a_linear_booster_has_weight_importance_only(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    dtrain = xgb.DMatrix(data["X"], label=data["y"] % 3)
    xgb.train({"booster": "gblinear", "objective": "multi:softprob", "num_class": 3}, dtrain, 3)
    run = only_run(client)  # strict mode: no background failure either
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {"feature_importance/weight.json", "feature_importance/weight.svg"}


@pytest.mark.filterwarnings("ignore:Pass `.*` as keyword args:FutureWarning")
def test_keyword_arguments_passed_positionally_are_tracked_as_xgboost_takes_them(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    """XGBoost still takes ``evals`` (and ``cv``'s ``nfold``) positionally, with a
    FutureWarning: such a call is tracked exactly as its keyword form (issue 13)."""
    dtrain, dvalid = matrices(data)
    xgb.train(PARAMS, dtrain, 5, [(dtrain, "train"), (dvalid, "valid")])
    xgb.cv({**PARAMS, "eval_metric": "logloss"}, dtrain, 4, 2)
    train, cv = sorted(mlflow_runs(client), key=lambda run: run.info.start_time)
    assert train.info.run_name == "xgboost-train" and train.info.status == "FINISHED"
    assert [step for step, _ in history(client, train, "valid-auc")] == list(range(5))
    assert train.data.params["num_boost_round"] == "5" and "evals" not in train.data.params
    assert cv.info.run_name == "xgboost-cv" and cv.data.params["nfold"] == "2"
    assert [step for step, _ in history(client, cv, "test-logloss-mean")] == list(range(4))
