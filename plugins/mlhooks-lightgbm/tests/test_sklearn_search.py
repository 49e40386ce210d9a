"""LightGBM estimators inside scikit-learn's meta-estimators, with mlhooks-sklearn
installed too: a search is one run with a child run per candidate, a pipeline one run;
the LightGBM fits inside them are not runs of their own."""

from __future__ import annotations

from typing import Any

import joblib
import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
import mlhooks_sklearn
from conftest import QUIET, history, mlflow_runs, only_run

pytestmark = pytest.mark.usefixtures("autolog")

GRID = {"num_leaves": [3, 7], "learning_rate": [0.1, 0.3]}


@pytest.fixture
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


def parent_and_children(client: MlflowClient) -> tuple[Any, list[Any]]:
    runs = mlflow_runs(client)
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run is not parent]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    return parent, children


@pytest.mark.parametrize("backend", ["sequential", "threading", "loky"])
def test_a_grid_search_is_one_run_with_a_child_per_candidate(
    client: MlflowClient, cancer: tuple[np.ndarray, np.ndarray], backend: str
) -> None:
    assert "sklearn" in mlhooks._host.integrations and mlhooks_sklearn is not None
    X, y = cancer
    search = GridSearchCV(lgb.LGBMClassifier(n_estimators=10, **QUIET), GRID, cv=3,
                          n_jobs=1 if backend == "sequential" else 2)  # fmt: skip
    with joblib.parallel_backend("loky" if backend == "sequential" else backend):
        search.fit(X, y)
    parent, children = parent_and_children(client)
    assert parent.info.run_name == "GridSearchCV" and parent.info.status == "FINISHED"
    assert parent.data.tags["mlhooks.framework"] == "sklearn"
    assert parent.data.params["best_num_leaves"] == str(search.best_params_["num_leaves"])
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    # One child per candidate, from cv_results_: no run for any of the 12 fold fits
    # nor for the refit, wherever they ran.
    assert sorted(c.info.run_name for c in children) == [f"candidate-{i}" for i in range(4)]
    results = search.cv_results_
    for child in children:
        row = int(child.info.run_name.split("-")[-1])
        assert child.data.params == {k: str(v) for k, v in results["params"][row].items()}
        assert child.data.metrics["mean_test_score"] == pytest.approx(
            results["mean_test_score"][row]
        )
    loaded = mlflow.sklearn.load_model(f"runs:/{parent.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), search.best_estimator_.predict(X))


def test_a_pipeline_ending_in_lightgbm_is_one_run(
    client: MlflowClient, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = cancer
    pipeline = Pipeline([("scale", StandardScaler()), ("gbm", lgb.LGBMClassifier(**QUIET))])
    pipeline.fit(X, y)
    run = only_run(client)
    assert run.info.run_name == "Pipeline" and run.data.tags["mlhooks.framework"] == "sklearn"


def test_a_lightgbm_fit_is_tracked_by_this_plugin_only(
    client: MlflowClient, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    """mlhooks-sklearn patches only classes defined in sklearn.*: LightGBM's estimators
    (which define their own fit) are logged once, by this plugin."""
    X, y = cancer
    lgb.LGBMClassifier(n_estimators=4, **QUIET).fit(X[:400], y[:400], eval_X=X[400:],
                                                    eval_y=y[400:])  # fmt: skip
    run = only_run(client)
    assert run.data.tags["mlhooks.framework"] == "lightgbm"
    assert len(history(client, run, "valid_0-binary_logloss")) == 4
