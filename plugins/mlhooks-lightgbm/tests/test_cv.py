"""``lightgbm.cv``: the mean and standard deviation of every metric per iteration, read
back from a real sqlite MLflow store."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.model_selection import KFold

import mlhooks
from conftest import QUIET, history, inputs_by_name, mlflow_runs, only_run

pytestmark = pytest.mark.usefixtures("autolog")

PARAMS = {"objective": "binary", "metric": ["binary_logloss", "auc"], "num_leaves": 7, **QUIET}


def dataset(data: dict[str, Any]) -> lgb.Dataset:
    return lgb.Dataset(data["X"], label=data["y"])


def test_mean_and_stdv_of_every_metric_per_iteration(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    results = lgb.cv(PARAMS, dataset(data), num_boost_round=8, nfold=3, seed=1,
                     eval_train_metric=True)  # fmt: skip
    run = only_run(client)
    assert run.info.run_name == "lightgbm-cv" and run.info.status == "FINISHED"
    for split in ("train", "valid"):
        for metric in ("binary_logloss", "auc"):
            for stat in ("mean", "stdv"):
                points = history(client, run, f"{split}-{metric}-{stat}")
                assert [s for s, _ in points] == list(range(8))
                expected = results[f"{split} {metric}-{stat}"]
                np.testing.assert_allclose([v for _, v in points], expected, rtol=1e-9)
    params = run.data.params
    assert params["nfold"] == "3" and params["num_boost_round"] == "8"
    assert params["seed"] == "1" and params["eval_train_metric"] == "True"
    assert params["num_leaves"] == "7" and "train_set" not in params
    assert inputs_by_name(run) == {"train": (mlhooks.fingerprint(data["X"]).digest, "train")}
    assert "model" not in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_early_stopping(client: MlflowClient, data: dict[str, Any]) -> None:
    params = {**PARAMS, "learning_rate": 0.5, "num_leaves": 31}
    results = lgb.cv(params, dataset(data), 300, nfold=3, return_cvbooster=True,
                     callbacks=[lgb.early_stopping(4, verbose=False)])  # fmt: skip
    run = only_run(client)
    best = results["cvbooster"].best_iteration
    assert best == len(results["valid auc-mean"]) < 300  # cv keeps the iterations up to the best
    metrics = run.data.metrics
    assert metrics["best_iteration"] == best
    assert metrics["stopped_iteration"] == best + 4
    assert metrics["best.valid-auc-mean"] == pytest.approx(results["valid auc-mean"][-1])
    assert metrics["best.valid-auc-stdv"] == pytest.approx(results["valid auc-stdv"][-1])
    points = history(client, run, "valid-auc-mean")
    assert [s for s, _ in points] == list(range(best + 4))  # every iteration that ran
    assert history(client, run, "best_iteration")[0][0] == best - 1
    assert run.data.params["return_cvbooster"] == "True"


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored by KFold")  # LightGBM's call
def test_a_splitter_as_folds(client: MlflowClient, data: dict[str, Any]) -> None:
    lgb.cv(PARAMS, dataset(data), 3, folds=KFold(n_splits=2, shuffle=True, random_state=0))
    run = only_run(client)
    assert run.data.params["folds"] == "KFold"
    assert len(history(client, run, "valid-auc-mean")) == 3


def test_every_argument_positionally(client: MlflowClient, data: dict[str, Any]) -> None:
    seen: list[int] = []

    def mine(env: Any) -> None:
        seen.append(env.iteration)

    results = lgb.cv(PARAMS, dataset(data), 4, None, 2, True, True, None, None, None, None,
                     3, [mine])  # fmt: skip
    run = only_run(client)
    assert seen == [0, 1, 2, 3]
    assert run.data.params["nfold"] == "2" and run.data.params["seed"] == "3"
    points = history(client, run, "valid-auc-mean")
    np.testing.assert_allclose([v for _, v in points], results["valid auc-mean"], rtol=1e-9)


def test_a_failing_fold_preprocessor_fails_the_run_with_the_same_error(
    client: MlflowClient, data: dict[str, Any]
) -> None:
    error = KeyError("no such column")

    def fpreproc(train: Any, test: Any, params: Any) -> Any:
        raise error

    with pytest.raises(KeyError) as raised:
        lgb.cv(PARAMS, dataset(data), 3, nfold=2, fpreproc=fpreproc)
    assert raised.value is error
    (run,) = mlflow_runs(client)
    assert run.info.status == "FAILED"
