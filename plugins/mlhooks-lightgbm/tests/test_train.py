"""``lightgbm.train`` with real boosters, read back from a real sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import QUIET, history, inputs_by_name, mlflow_runs, only_run

pytestmark = pytest.mark.usefixtures("autolog")

PARAMS = {"objective": "binary", "metric": ["binary_logloss", "auc"], "num_leaves": 7, **QUIET}


def datasets(data: dict[str, Any]) -> tuple[lgb.Dataset, lgb.Dataset]:
    train = lgb.Dataset(data["X"], label=data["y"])
    return train, lgb.Dataset(data["X_valid"], label=data["y_valid"], reference=train)


def test_every_iteration_of_every_eval_set_and_metric(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)
    recorded: dict[str, Any] = {}
    booster = lgb.train(
        PARAMS,
        train,
        num_boost_round=40,
        valid_sets=[train, valid],
        valid_names=["train", "valid"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    run = only_run(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "lightgbm-train"
    for name in ("train", "valid"):
        for metric in ("binary_logloss", "auc"):
            points = history(client, run, f"{name}-{metric}")
            assert [step for step, _ in points] == list(range(40))
            expected = recorded[name][metric]
            np.testing.assert_allclose([value for _, value in points], expected, rtol=1e-9)
    params = run.data.params
    assert params["num_leaves"] == "7" and params["objective"] == "binary"
    assert params["metric"] == "['binary_logloss', 'auc']"
    assert params["num_boost_round"] == "40" and params["keep_training_booster"] == "False"
    assert not {"train_set", "valid_sets", "valid_names", "callbacks"} & params.keys()
    assert run.data.tags["mlhooks.framework"] == "lightgbm"
    assert booster.current_iteration() == 40


def test_default_validation_names(client: MlflowClient, data: dict[str, Any]) -> None:
    """Without valid_names LightGBM calls the training set 'training' and the others
    'valid_<i>'; the metric keys and dataset names follow it."""
    train, valid = datasets(data)
    lgb.train(PARAMS, train, 3, valid_sets=[train, valid])
    run = only_run(client)
    assert {key.split("-")[0] for key in run.data.metrics} == {"training", "valid_1"}
    assert inputs_by_name(run) == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train"),
        "valid_1": (mlhooks.fingerprint(data["X_valid"]).digest, "eval"),
    }


def test_datasets_with_contexts_and_names(client: MlflowClient, data: dict[str, Any]) -> None:
    train, valid = datasets(data)
    test = lgb.Dataset(data["X_test"], label=data["y_test"], reference=train)
    lgb.train(PARAMS, train, 3, valid_sets=[valid, test], valid_names=["holdout", "test"])
    assert inputs_by_name(only_run(client)) == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train"),
        "holdout": (mlhooks.fingerprint(data["X_valid"]).digest, "eval"),
        "test": (mlhooks.fingerprint(data["X_test"]).digest, "eval"),
    }


@pytest.mark.parametrize("form", ["positional", "keyword"])
def test_a_dataframe_and_a_dataset_whose_raw_data_was_freed(
    client: MlflowClient, data: dict[str, Any], form: str
) -> None:
    """A Dataset drops its data once constructed: its fingerprint was taken when it
    was built (its data given positionally or by keyword), so a second training on it
    logs it all the same."""
    frame = pd.DataFrame(data["X"], columns=[f"feature_{i}" for i in range(6)])
    if form == "positional":
        train = lgb.Dataset(frame, data["y"])
    else:
        train = lgb.Dataset(data=frame, label=data["y"])
    lgb.train(PARAMS, train, 2)
    assert train.data is None  # LightGBM's own behaviour: the raw data is gone
    lgb.train(PARAMS, train, 3)
    first, second = mlflow_runs(client)
    for run in (first, second):
        assert inputs_by_name(run) == {"train": (mlhooks.fingerprint(frame).digest, "train")}
    assert "feature_0" in second.inputs.dataset_inputs[0].dataset.schema


def test_a_dataset_built_before_autolog_is_fingerprinted_from_its_data(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    mlhooks.autolog(disable=True)
    train = lgb.Dataset(data["X"], label=data["y"])
    mlhooks.autolog()
    lgb.train(PARAMS, train, 2)
    assert inputs_by_name(only_run(client)) == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train")
    }


def test_a_dataset_from_a_file_has_no_fingerprint(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "train.csv"
    np.savetxt(path, np.column_stack([data["y"], data["X"]]), delimiter=",")
    lgb.train(PARAMS, lgb.Dataset(str(path), params={"header": False}), 2)
    run = only_run(client)
    assert run.info.status == "FINISHED" and run.inputs.dataset_inputs == []


@pytest.mark.parametrize("how", ["callback", "param"])
def test_early_stopping_values_match_the_booster(
    client: MlflowClient, data: dict[str, Any], how: str
) -> None:
    train, valid = datasets(data)
    params = {**PARAMS, "learning_rate": 0.5, "num_leaves": 31}  # overfits fast
    if how == "param":
        params["early_stopping_round"] = 5
    callbacks = [lgb.early_stopping(5, verbose=False)] if how == "callback" else None
    booster = lgb.train(
        params, train, 300, valid_sets=[train, valid], valid_names=["train", "valid"],
        callbacks=callbacks,
    )  # fmt: skip
    run = only_run(client)
    metrics = run.data.metrics
    stopped = int(metrics["stopped_iteration"])
    assert booster.best_iteration + 5 == stopped < 300, "the data must make training stop early"
    assert metrics["best_iteration"] == booster.best_iteration
    for metric in ("binary_logloss", "auc"):
        best = booster.best_score["valid"][metric]
        assert metrics[f"best.valid-{metric}"] == pytest.approx(best)
        points = history(client, run, f"valid-{metric}")
        assert [step for step, _ in points] == list(range(stopped))  # every iteration trained
        assert dict(points)[booster.best_iteration - 1] == pytest.approx(best)
    # The best values are stored at the best iteration's own step.
    assert history(client, run, "best.valid-auc") == [
        (booster.best_iteration - 1, pytest.approx(booster.best_score["valid"]["auc"]))
    ]
    assert history(client, run, "best_iteration")[0][0] == booster.best_iteration - 1


def test_a_custom_metric_is_logged_every_iteration(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)

    def error_rate(predictions: np.ndarray, dataset: lgb.Dataset) -> tuple[str, float, bool]:
        return "error_rate", float(np.mean((predictions > 0.5) != dataset.get_label())), False

    recorded: dict[str, Any] = {}
    lgb.train(
        PARAMS, train, 15, valid_sets=[valid], valid_names=["valid"], feval=error_rate,
        callbacks=[lgb.record_evaluation(recorded)],
    )  # fmt: skip
    run = only_run(client)
    points = history(client, run, "valid-error_rate")
    assert [step for step, _ in points] == list(range(15))
    np.testing.assert_allclose([v for _, v in points], recorded["valid"]["error_rate"])
    assert run.data.params["feval"].endswith("error_rate")


def test_ranking_metrics_name_at_as_at(client: MlflowClient, data: dict[str, Any]) -> None:
    relevance = np.clip((data["X"][:, 0] * 2).round(), 0, 3).astype(int)
    train = lgb.Dataset(data["X"], label=relevance, group=[10] * 60)
    recorded: dict[str, Any] = {}
    lgb.train(
        {"objective": "lambdarank", "metric": "ndcg", "eval_at": [3], **QUIET}, train, 5,
        valid_sets=[train], valid_names=["train"], callbacks=[lgb.record_evaluation(recorded)],
    )  # fmt: skip
    run = only_run(client)
    assert [key for key in run.data.metrics if "ndcg" in key] == ["train-ndcg_at_3"]
    points = history(client, run, "train-ndcg_at_3")
    np.testing.assert_allclose([v for _, v in points], recorded["train"]["ndcg@3"])


def test_user_callbacks_run_every_iteration_in_their_order(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)
    calls: list[tuple[str, int]] = []

    def recorder(name: str) -> Any:
        def callback(env: Any) -> None:
            calls.append((name, env.iteration))

        return callback

    mine = [recorder("first"), recorder("second")]
    given = list(mine)
    lgb.train(PARAMS, train, 5, valid_sets=[valid], valid_names=["valid"], callbacks=given)
    assert calls == [(name, i) for i in range(5) for name in ("first", "second")]
    assert given == mine  # the caller's list is untouched
    assert [cb.order for cb in mine] == [-2, -1]  # as LightGBM numbers them untracked
    assert len(history(client, only_run(client), "valid-auc")) == 5


def test_a_callback_that_stops_training_loses_no_iteration(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)

    def stop_at_three(env: Any) -> None:
        if env.iteration == 3:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    stop_at_three.order = -100  # type: ignore[attr-defined]  # before LightGBM's own
    lgb.train(PARAMS, train, 10, valid_sets=[valid], valid_names=["valid"],
              callbacks=[stop_at_three])  # fmt: skip
    run = only_run(client)
    assert [s for s, _ in history(client, run, "valid-binary_logloss")] == [0, 1, 2, 3]
    assert run.data.metrics["best_iteration"] == 4


def test_the_model_reloads_and_predicts_identically(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)
    booster = lgb.train(PARAMS, train, 10, valid_sets=[valid])
    run = only_run(client)
    uri = f"runs:/{run.info.run_id}/model"
    loaded = mlflow.lightgbm.load_model(uri)
    assert isinstance(loaded, lgb.Booster)
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), booster.predict(data["X_test"]))
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.flavors.keys() >= {"lightgbm", "python_function"}
    np.testing.assert_allclose(
        np.asarray(pyfunc.predict(data["X_test"])), booster.predict(data["X_test"])
    )
    inputs = pyfunc.metadata.get_input_schema()  # from the first rows of the training data
    assert inputs is not None and len(inputs.inputs) == 1


@pytest.mark.skipif(
    not hasattr(MlflowClient, "create_logged_model"), reason="logged models need MLflow 3"
)
def test_the_model_is_an_mlflow_logged_model_of_its_run(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    train, valid = datasets(data)
    booster = lgb.train(PARAMS, train, 10, valid_sets=[valid], valid_names=["valid"])
    run = only_run(client)
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert (model.name, model.status, model.source_run_id) == ("model", "READY", run.info.run_id)
    assert model.tags["mlhooks.flavor"] == "lightgbm"
    assert model.params["num_leaves"] == "7" and model.params.items() <= run.data.params.items()
    linked = {metric.key: metric for metric in model.metrics}
    assert {key: m.value for key, m in linked.items()} == run.data.metrics
    assert linked["valid-auc"].dataset_name == "valid"  # computed on the validation set
    loaded = mlflow.lightgbm.load_model(f"models:/{model.model_id}")
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), booster.predict(data["X_test"]))
    again = mlhooks.load_model(run.info.run_id)
    np.testing.assert_array_equal(again.predict(data["X_test"]), booster.predict(data["X_test"]))


def test_feature_importance_json_and_charts(
    client: MlflowClient, data: dict[str, Any], tmp_path: Path
) -> None:
    train, _ = datasets(data)
    booster = lgb.train(PARAMS, train, 10)
    run = only_run(client)
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {
        f"feature_importance/{kind}.{ext}" for kind in ("split", "gain") for ext in ("json", "svg")
    }
    local = Path(client.download_artifacts(run.info.run_id, "feature_importance", str(tmp_path)))
    for kind in ("split", "gain"):
        scores = json.loads((local / f"{kind}.json").read_text())
        expected = dict(zip(booster.feature_name(), booster.feature_importance(kind), strict=True))
        assert scores == pytest.approx(expected)
        assert list(scores.values()) == sorted(scores.values(), reverse=True)
        chart = ElementTree.fromstring((local / f"{kind}.svg").read_text())
        bars = [e for e in chart.iter("{http://www.w3.org/2000/svg}rect")][1:]  # background first
        assert len(bars) == len(scores)


def test_importance_types_are_configurable(client: MlflowClient, data: dict[str, Any]) -> None:
    mlhooks.autolog(lightgbm={"importance_types": ["gain"]})
    lgb.train(PARAMS, datasets(data)[0], 3)
    run = only_run(client)
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {"feature_importance/gain.json", "feature_importance/gain.svg"}


@pytest.mark.parametrize(
    ("types", "error", "message"),
    [
        ("gain", TypeError, r"'importance_types' must be a list of str, not 'gain'"),
        (["weight"], ValueError, r"importance_types has 'weight'; LightGBM knows split, gain"),
    ],
)
def test_importance_types_are_checked_at_autolog(
    types: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=rf"^autolog\(lightgbm=\{{\.\.\.\}}\): {message}"):
        mlhooks.autolog(lightgbm={"importance_types": types})


def test_log_every_n_steps_keeps_the_last_iteration(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    mlhooks.autolog(log_every_n_steps=4)
    train, valid = datasets(data)
    lgb.train(PARAMS, train, 10, valid_sets=[valid], valid_names=["valid"])
    assert [s for s, _ in history(client, only_run(client), "valid-auc")] == [0, 4, 8, 9]


def test_continued_training_continues_the_steps(client: MlflowClient, data: dict[str, Any]) -> None:
    first = lgb.train(PARAMS, datasets(data)[0], 5)
    train, valid = datasets(data)  # fresh: LightGBM cannot reuse one whose data it freed
    lgb.train(PARAMS, train, 4, valid_sets=[valid], valid_names=["valid"], init_model=first)
    _, second = mlflow_runs(client)
    assert [s for s, _ in history(client, second, "valid-auc")] == [5, 6, 7, 8]
    assert second.data.params["init_model"] == "Booster"


def test_models_and_datasets_can_be_turned_off(client: MlflowClient, data: dict[str, Any]) -> None:
    mlhooks.autolog(lightgbm={"log_models": False, "log_datasets": False, "importance_types": []})
    train, valid = datasets(data)
    lgb.train(PARAMS, train, 3, valid_sets=[valid], valid_names=["valid"])
    run = only_run(client)
    listed = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert listed == {"mlhooks"}  # the run context only: no model, no importance
    assert run.inputs.dataset_inputs == []
    assert len(history(client, run, "valid-auc")) == 3


def test_a_fit_inside_an_mlflow_run_logs_there(client: MlflowClient, data: dict[str, Any]) -> None:
    train, valid = datasets(data)
    with mlflow.start_run(run_name="mine") as mine:
        lgb.train(PARAMS, train, 4, valid_sets=[valid], valid_names=["valid"])
        assert mlflow.active_run().info.run_id == mine.info.run_id
    assert mlhooks.flush(60)
    run = client.get_run(mine.info.run_id)
    assert len(history(client, run, "valid-auc")) == 4
    assert run.data.params["num_leaves"] == "7"


def test_a_failing_objective_fails_the_run_with_the_same_error(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    error = ValueError("bad objective")

    def objective(predictions: np.ndarray, dataset: lgb.Dataset) -> Any:
        raise error

    with pytest.raises(ValueError) as raised:
        lgb.train({"objective": objective, **QUIET}, datasets(data)[0], 3)
    assert raised.value is error
    run = only_run(client)
    assert run.info.status == "FAILED" and run.data.params["objective"].endswith("objective")


def test_arguments_lightgbm_refuses_raise_its_own_error_untracked(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    with pytest.raises(TypeError, match="early_stopping_rounds"):
        lgb.train(PARAMS, datasets(data)[0], 3, early_stopping_rounds=2)  # gone in 4.0
    assert mlflow_runs(client) == []


def test_disable_restores_train_and_stops_tracking(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    mlhooks.autolog(disable=True)
    assert lgb.train is lgb.engine.train is lgb.sklearn.train
    assert lgb.engine.train.__module__ == "lightgbm.engine"
    lgb.train(PARAMS, datasets(data)[0], 2)
    assert mlflow_runs(client) == []


def test_every_argument_positionally(client: MlflowClient, data: dict[str, Any]) -> None:
    """LightGBM takes all of train's arguments positionally, callbacks included: the
    call is tracked exactly as its keyword form, and the user's callback still runs."""
    train, valid = datasets(data)
    seen: list[int] = []

    def mine(env: Any) -> None:
        seen.append(env.iteration)

    booster = lgb.train(PARAMS, train, 6, [train, valid], ["train", "valid"], None, None, False,
                        [mine])  # fmt: skip
    run = only_run(client)
    assert seen == list(range(6)) and booster.current_iteration() == 6
    assert run.data.params["num_boost_round"] == "6"
    for key in ("train-auc", "valid-auc", "valid-binary_logloss"):
        assert [step for step, _ in history(client, run, key)] == list(range(6))
    assert set(inputs_by_name(run)) == {"train", "valid"}
