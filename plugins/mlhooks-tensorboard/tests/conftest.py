"""Fixtures: every test writes TensorBoard runs to its own folder and MLflow runs to
its own sqlite store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mlhooks.testing import run_script

os.environ.setdefault("MLHOOKS_STRICT", "1")
# Tests compare texts and notices exactly; the run-context test turns capture back on.
os.environ.setdefault("MLHOOKS_LOG_CONTEXT", "0")
# A down server fails fast, so the writer spools instead of waiting on MLflow's retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
# The test servers (`mlflow server`) run without MLflow's job runners: processes that
# tracking does not use, which take seconds of CPU at every start and stop.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


@pytest.fixture(autouse=True)
def tb_root(mlhooks_clean: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The TensorBoard root of this test (through MLHOOKS_TENSORBOARD_DIR)."""
    root = tmp_path / "tb-runs"
    monkeypatch.setenv("MLHOOKS_TENSORBOARD_DIR", str(root))
    monkeypatch.delenv("MLHOOKS_BACKENDS", raising=False)
    return root


@pytest.fixture
def tracking_uri(mlflow_tracking_uri: str) -> str:
    """A sqlite MLflow store of this test (from the pytest plugin ``mlhooks_mlflow.testing``,
    which also gives ``new_mlflow_server``)."""
    return mlflow_tracking_uri


@pytest.fixture
def script() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_script
