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

QUIET = {"verbose": -1, "num_threads": 1}
"""LightGBM params every test passes: no console output, one thread."""


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
    assert len(runs) == 1, f"{len(runs)} runs: {[run.info.run_name for run in runs]}"
    return runs[0]


def history(client: MlflowClient, run: Any, key: str) -> list[tuple[int, float]]:
    points = client.get_metric_history(run.info.run_id, key)
    return sorted((m.step, m.value) for m in points)


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


@pytest.fixture
def data() -> dict[str, Any]:
    """A small binary classification problem: train, valid and test splits."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.normal(scale=0.7, size=900) > 0).astype(int)
    return {
        "X": X[:600],
        "y": y[:600],
        "X_valid": X[600:750],
        "y_valid": y[600:750],
        "X_test": X[750:],
        "y_test": y[750:],
    }
