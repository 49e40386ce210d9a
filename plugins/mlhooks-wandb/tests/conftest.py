"""Fixtures: every test writes offline W&B runs under its own folder (never the
checkout, never the home folder), and MLflow runs to its own sqlite store."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mlhooks
from mlhooks import LocalStore
from mlhooks.testing import run_script
from mlhooks_wandb import TAGS_KEY, reading
from mlhooks_wandb.mapping import artifact_name

os.environ.setdefault("MLHOOKS_STRICT", "1")
# Tests compare what was logged exactly; the run-context test turns capture back on.
os.environ.setdefault("MLHOOKS_LOG_CONTEXT", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ["WANDB_SILENT"] = "true"
os.environ["WANDB_MODE"] = "offline"  # never the network
os.environ.pop("WANDB_API_KEY", None)


@pytest.fixture(autouse=True)
def wandb_dir(mlhooks_clean: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B's folder of this test (``WANDB_DIR``: runs under ``<it>/wandb/``); W&B's
    staging, cache and config folders beside it; the test runs in ``tmp_path``."""
    root = tmp_path / "wb"
    for variable, folder in {
        "WANDB_DIR": root,
        "WANDB_DATA_DIR": tmp_path / "wandb-data",
        "WANDB_CACHE_DIR": tmp_path / "wandb-cache",
        "WANDB_CONFIG_DIR": tmp_path / "wandb-config",
        "WANDB_ARTIFACT_DIR": tmp_path / "wandb-artifacts",
    }.items():
        monkeypatch.setenv(variable, str(folder))
    for variable in ("WANDB_PROJECT", "WANDB_ENTITY", "MLHOOKS_BACKENDS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return root


@pytest.fixture
def tracking_uri(mlflow_tracking_uri: str) -> str:
    """A sqlite MLflow store of this test (from the pytest plugin ``mlhooks_mlflow.testing``)."""
    return mlflow_tracking_uri


@pytest.fixture
def script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_script``, in a process of its own W&B: W&B tells child processes where
    its service listens (``WANDB_SERVICE``), so that they share it; a user's script
    does not share the test's. Temporary folders that W&B leaves behind when a
    process is killed go under ``tmp_path``."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    return run_script


def stored_run(root: Path, run_id: str) -> reading.StoredRun:
    """What W&B stored for the ended run ``run_id``, once mlhooks delivered everything
    and W&B's service wrote it."""
    assert mlhooks.flush(60)
    return reading.load_run(root, run_id, wait=60)


def points_of(stored: reading.StoredRun) -> list[tuple[str, int, Any]]:
    """Every metric point W&B stored: ``(key, step, value)``, sorted (NaN as "nan")."""
    return sorted(
        (key, step, _comparable(value))
        for key in stored.metric_keys()
        for step, value in stored.points(key)
    )


def logged_points(metrics: dict[str, list[mlhooks.Metric]]) -> list[tuple[str, int, Any]]:
    """The same for what mlhooks logged (a ``RunData.metrics``)."""
    return sorted(
        (p.key, p.step, _comparable(p.value)) for points in metrics.values() for p in points
    )


def _comparable(value: float) -> Any:
    return "nan" if math.isnan(value) else float(value)


EXIT_CODES = {"FINISHED": 0, "FAILED": 1, "KILLED": 255}


def assert_same_run(logged: mlhooks.RunData, stored: reading.StoredRun) -> None:
    """Everything mlhooks stored in the local store (the reference) is in W&B."""
    info = logged.info
    assert (stored.run_id, stored.name) == (info.run_id, info.name)
    assert stored.exit_code == EXIT_CODES[info.status.value]
    config = {key: value for key, value in stored.config.items() if key != TAGS_KEY}
    assert {key: str(value) for key, value in config.items()} == logged.params
    assert stored.config.get(TAGS_KEY, {}) == logged.tags
    assert points_of(stored) == logged_points(logged.metrics)
    for dataset in logged.datasets:
        found = stored.artifact("dataset", artifact_name(dataset.name))
        assert found.metadata == dataset.to_dict()
    for model in logged.models:
        found = stored.artifact("model", artifact_name(model.name, stored.run_id))
        assert model.path is not None
        name = "model.pkl" if model.payload is not None else Path(model.path).name
        assert Path(found.files[name]).read_bytes() == Path(model.path).read_bytes()
    assert len(stored.artifacts) == len(logged.datasets) + len(logged.models)
    assert set(stored.files) == set(logged.artifacts)
    for name in logged.artifacts:
        kept = LocalStore().artifact_path(info.run_id, name).read_bytes()
        assert (stored.folder / "files" / name).read_bytes() == kept
