"""LightGBM's scikit-learn API: one run per fit (the inner ``train`` is not a second
one), with the estimator's params, every iteration of every eval set, early stopping
and the fitted estimator as the model."""

from __future__ import annotations

import copy
import gc
import weakref
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import QUIET, history, inputs_by_name, mlflow_runs, only_run

pytestmark = pytest.mark.usefixtures("autolog")
# LightGBM 4.7 deprecates eval_set for eval_X/eval_y; both forms are tracked.
EVAL_SET_DEPRECATED = pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")


def regression_target(X: np.ndarray) -> np.ndarray:
    return X[:, 0] * 2.0 - X[:, 1]


@pytest.mark.parametrize(
    ("klass", "metrics"),
    [(lgb.LGBMClassifier, ["binary_logloss", "auc"]), (lgb.LGBMRegressor, ["l2", "l1"])],
    ids=["classifier", "regressor"],
)
def test_estimators_with_eval_sets_and_early_stopping(
    client: MlflowClient, data: dict[str, Any], klass: type, metrics: list[str]
) -> None:
    classify = klass is lgb.LGBMClassifier
    y = data["y"] if classify else regression_target(data["X"])
    y_valid = data["y_valid"] if classify else regression_target(data["X_valid"])
    model = klass(n_estimators=300, learning_rate=0.5, metric=metrics, **QUIET)
    before = copy.deepcopy(model.get_params())
    model.fit(
        data["X"], y, eval_X=(data["X"], data["X_valid"]), eval_y=(y, y_valid),
        eval_names=["fit", "holdout"], callbacks=[lgb.early_stopping(5, verbose=False)],
    )  # fmt: skip
    assert model.get_params() == before  # the estimator itself is not changed
    run = only_run(client)
    assert run.info.run_name == klass.__name__ and run.info.status == "FINISHED"
    results = model.evals_result_
    stopped = int(run.data.metrics["stopped_iteration"])
    assert model.best_iteration_ + 5 == stopped < 300, "the data must make training stop early"
    for name in ("fit", "holdout"):
        for metric in metrics:
            points = history(client, run, f"{name}-{metric}")
            assert [s for s, _ in points] == list(range(stopped))
            np.testing.assert_allclose([v for _, v in points], results[name][metric])
    params = run.data.params
    assert params["n_estimators"] == "300" and params["learning_rate"] == "0.5"
    assert params["metric"] == str(metrics) and params["num_threads"] == "1"
    assert "callbacks" not in params and "eval_X" not in params
    assert run.data.metrics["best_iteration"] == model.best_iteration_
    for metric in metrics:
        best = model.best_score_["holdout"][metric]
        assert run.data.metrics[f"best.holdout-{metric}"] == pytest.approx(best)
    assert inputs_by_name(run) == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train"),
        "holdout": (mlhooks.fingerprint(data["X_valid"]).digest, "eval"),
    }  # the training data among the eval sets is not logged twice
    loaded = mlflow.lightgbm.load_model(f"runs:/{run.info.run_id}/model")
    assert type(loaded) is klass
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), model.predict(data["X_test"]))


@EVAL_SET_DEPRECATED
def test_eval_set_and_its_default_names(client: MlflowClient, data: dict[str, Any]) -> None:
    model = lgb.LGBMClassifier(n_estimators=6, **QUIET)
    model.fit(
        data["X"], data["y"],
        eval_set=[(data["X"], data["y"]), (data["X_valid"], data["y_valid"])],
    )  # fmt: skip
    run = only_run(client)
    assert set(model.evals_result_) == {"training", "valid_1"}
    for name in ("training", "valid_1"):
        points = history(client, run, f"{name}-binary_logloss")
        np.testing.assert_allclose(
            [v for _, v in points], model.evals_result_[name]["binary_logloss"]
        )
    assert inputs_by_name(run) == {
        "train": (mlhooks.fingerprint(data["X"]).digest, "train"),
        "valid_1": (mlhooks.fingerprint(data["X_valid"]).digest, "eval"),
    }


def test_ranker_with_an_eval_set(client: MlflowClient, data: dict[str, Any]) -> None:
    relevance = np.clip((data["X"][:, 0] * 2).round(), 0, 3).astype(int)
    relevance_valid = np.clip((data["X_valid"][:, 0] * 2).round(), 0, 3).astype(int)
    ranker = lgb.LGBMRanker(n_estimators=8, **QUIET).fit(
        data["X"], relevance, group=[10] * 60, eval_X=data["X_valid"], eval_y=relevance_valid,
        eval_group=[[10] * 15], eval_at=[3, 5],
    )  # fmt: skip
    run = only_run(client)
    assert run.info.run_name == "LGBMRanker"
    assert run.data.params["eval_at"] == "[3, 5]"
    for at in (3, 5):
        points = history(client, run, f"valid_0-ndcg_at_{at}")
        np.testing.assert_allclose(
            [v for _, v in points], ranker.evals_result_["valid_0"][f"ndcg@{at}"]
        )
    loaded = mlflow.lightgbm.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), ranker.predict(data["X_test"]))


def test_a_fit_without_eval_sets_logs_params_model_and_importance(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    model = lgb.LGBMRegressor(n_estimators=5, **QUIET).fit(data["X"], regression_target(data["X"]))
    run = only_run(client)
    assert run.data.params["n_estimators"] == "5"
    assert {k for k in run.data.metrics} == set()
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "feature_importance")}
    assert listed == {
        f"feature_importance/{k}.{e}" for k in ("split", "gain") for e in ("json", "svg")
    }
    loaded = mlflow.lightgbm.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), model.predict(data["X_test"]))


def test_fit_callbacks_still_run_and_are_not_replaced(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    iterations: list[int] = []

    def count(env: Any) -> None:
        iterations.append(env.iteration)

    callbacks = [count]
    lgb.LGBMClassifier(n_estimators=6, **QUIET).fit(
        data["X"], data["y"], eval_X=data["X_valid"], eval_y=data["y_valid"], callbacks=callbacks
    )
    assert iterations == list(range(6))
    assert callbacks == [count]
    assert len(history(client, only_run(client), "valid_0-binary_logloss")) == 6


def test_fit_arguments_positionally(client: MlflowClient, data: dict[str, Any]) -> None:
    """``fit(X, y, sample_weight, init_score, eval_set, eval_names, ...)`` positionally,
    as LightGBM takes it: tracked exactly as its keyword form."""
    seen: list[int] = []

    def mine(env: Any) -> None:
        seen.append(env.iteration)

    model = lgb.LGBMClassifier(n_estimators=5, **QUIET)
    with pytest.warns(lgb.basic.LGBMDeprecationWarning, match="eval_set"):
        model.fit(
            data["X"], data["y"], None, None, [(data["X_valid"], data["y_valid"])], ["valid"],
            None, None, None, "auc", "auto", "auto", [mine],
        )  # fmt: skip
    run = only_run(client)
    assert seen == list(range(5))
    assert run.data.params["eval_metric"] == "auc"
    for metric in ("auc", "binary_logloss"):
        points = history(client, run, f"valid-{metric}")
        np.testing.assert_allclose([v for _, v in points], model.evals_result_["valid"][metric])
    assert set(inputs_by_name(run)) == {"train", "valid"}


def test_a_failing_eval_metric_fails_the_run_with_the_same_error(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    error = ArithmeticError("bad metric")

    def metric(y_true: Any, y_pred: Any) -> Any:
        raise error

    with pytest.raises(ArithmeticError) as raised:
        lgb.LGBMClassifier(n_estimators=3, **QUIET).fit(
            data["X"], data["y"], eval_X=data["X_valid"], eval_y=data["y_valid"],
            eval_metric=metric,
        )  # fmt: skip
    assert raised.value is error
    (run,) = mlflow_runs(client)
    assert run.info.status == "FAILED" and run.data.params["eval_metric"].endswith("metric")


def test_inside_an_mlflow_run_the_estimator_logs_there(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    with mlflow.start_run(run_name="mine") as mine:
        lgb.LGBMClassifier(n_estimators=3, **QUIET).fit(data["X"], data["y"])
    assert mlhooks.flush(60)
    run = client.get_run(mine.info.run_id)
    assert run.data.params["n_estimators"] == "3"
    assert mlflow.lightgbm.load_model(f"runs:/{mine.info.run_id}/model") is not None


@pytest.mark.parametrize("through", ["instance", "class"])
def test_a_fit_is_tracked_and_the_estimator_not_kept(
    client: MlflowClient, data: dict[str, Any], through: str
) -> None:
    model = lgb.LGBMRegressor(n_estimators=3, **QUIET)
    if through == "instance":
        model.fit(data["X"], regression_target(data["X"]))
    else:  # wrapt hands the handler a partial here, not a bound method
        lgb.LGBMRegressor.fit(model, data["X"], regression_target(data["X"]))
    run = only_run(client)
    assert run.info.run_name == "LGBMRegressor" and run.data.params["n_estimators"] == "3"
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # nothing of mlhooks' holds the estimator once its fit is stored
