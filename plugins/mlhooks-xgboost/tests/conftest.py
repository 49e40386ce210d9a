"""Fixtures: a real sqlite MLflow store per test, autologging on, small generated data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG

os.environ.setdefault("MLHOOKS_STRICT", "1")


@pytest.fixture(autouse=True)
def tracking_uri(mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``)."""
    return mlflow_tracking_uri


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


@pytest.fixture
def autolog() -> Iterator[None]:
    mlhooks.autolog()
    yield
    mlhooks.autolog(disable=True)


def mlflow_runs(client: MlflowClient) -> list[Any]:
    """Every MLflow run of the store, oldest first, once mlhooks stored everything."""
    assert mlhooks.flush(60)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time ASC"])
    return [run for run in runs if RUN_ID_TAG in run.data.tags]


def only_run(client: MlflowClient) -> Any:
    runs = mlflow_runs(client)
    assert len(runs) == 1, f"{len(runs)} runs"
    return runs[0]


def history(client: MlflowClient, run: Any, key: str) -> list[tuple[int, float]]:
    points = client.get_metric_history(run.info.run_id, key)
    return sorted((m.step, m.value) for m in points)


@pytest.fixture
def data() -> dict[str, Any]:
    """A small binary classification problem: train, valid and test splits."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.normal(scale=0.7, size=600) > 0).astype(int)
    return {
        "X": X[:400],
        "y": y[:400],
        "X_valid": X[400:500],
        "y_valid": y[400:500],
        "X_test": X[500:],
        "y_test": y[500:],
    }
