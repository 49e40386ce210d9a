"""Fixtures: a real sqlite tracking store per test; the real `mlflow server` and the
helpers come from the pytest plugin ``mlhooks_mlflow.testing``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLHOOKS_STRICT", "1")
# Fail fast while a server is down: the writer spools instead of MLflow's long retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
# The test servers (`mlflow server`) run without MLflow's job runners: processes that
# tracking does not use, which take seconds of CPU at every start and stop.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


@pytest.fixture(autouse=True)
def tracking_uri(mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from ``mlhooks_mlflow.testing``)."""
    return mlflow_tracking_uri


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict mode off: for tests of what users see when something is fixed up."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")
