"""The fault-injection suite: each case runs a real script in a fresh interpreter
against a real store, injects one fault, and reads back what landed.

``store`` runs a case once per backend that keeps what the case checks: the embedded
local store and MLflow (a real sqlite store; the fixtures come from the pytest plugin
``mlhooks_mlflow.testing``). Cases say what must hold in their docstrings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from disks import SmallDisk
from mlhooks.testing import run_script

os.environ.setdefault("MLHOOKS_STRICT", "1")


@dataclass
class StoredRun:
    """What a store holds of one run, in one shape whatever the backend."""

    name: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Every point of each metric as (step, value), in step order."""
    parent: str | None = None
    """The name of the parent run, for a child run."""


@dataclass
class Store:
    """A backend under test: the environment that sends a script's runs to it, and
    how to read them back."""

    kind: str
    env: dict[str, str]
    root: Path

    def all_runs(self) -> list[StoredRun]:
        """Every run stored."""
        return _read_local(self.root) if self.kind == "local" else _read_mlflow(self.env)

    def runs(self) -> dict[str, StoredRun]:
        """Every run stored, by name (for runs whose names are unique)."""
        return {run.name: run for run in self.all_runs()}

    def run(self, name: str) -> StoredRun:
        runs = self.runs()
        assert name in runs, f"no run {name!r} in the {self.kind} store: {sorted(runs)}"
        return runs[name]

    def script(self, code: str, cwd: str | None = None, **env: str) -> Any:
        """Run ``code`` in a fresh interpreter writing to this store (in ``cwd``)."""
        return run_script(code, env={**self.env, **env}, cwd=cwd)


def _read_local(root: Path) -> list[StoredRun]:
    from mlhooks import LocalStore

    store = LocalStore(root)
    infos = {run_id: store.info(run_id) for run_id in store.run_ids()}
    found = []
    for run_id, info in infos.items():
        data = store.get_run(run_id)
        parent = infos.get(info.parent_id) if info.parent_id else None
        found.append(
            StoredRun(
                name=data.info.name,
                status=data.info.status.value,
                params=dict(data.params),
                metrics={
                    key: sorted((m.step, m.value) for m in points)
                    for key, points in data.metrics.items()
                },
                parent=parent.name if parent else None,
            )
        )
    return found


def _read_mlflow(env: dict[str, str]) -> list[StoredRun]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    history = client.get_metric_history
    found = []
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    names = {run.info.run_id: run.info.run_name for run in runs}
    for run in runs:
        name = run.data.tags.get("mlflow.runName", run.info.run_name)
        found.append(
            StoredRun(
                name=name,
                status=run.info.status,
                params=dict(run.data.params),
                metrics={
                    key: sorted((m.step, m.value) for m in history(run.info.run_id, key))
                    for key in run.data.metrics
                },
                parent=names.get(run.data.tags.get("mlflow.parentRunId", "")),
            )
        )
    return found


@pytest.fixture(params=["local", "mlflow"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each case once against the local store and once against MLflow (sqlite)."""
    local_dir = tmp_path / "mlhooks-runs"
    env = {"MLHOOKS_LOCAL_DIR": str(local_dir), "MLHOOKS_BACKENDS": request.param}
    if request.param == "mlflow":
        env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_tracking_uri")
    yield Store(request.param, env, local_dir)


@pytest.fixture
def small_disk(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> Iterator[Callable[..., SmallDisk]]:
    """``small_disk(name="disk")``: a 1 MB disk of this test at ``tmp_path / name``, to
    fill up or turn read-only (see disks.py); unmounted after the test."""
    made: list[SmallDisk] = []

    def make(name: str = "disk") -> SmallDisk:
        disk = SmallDisk(tmp_path / name)
        made.append(disk)
        record_property("disk", disk.kind)
        return disk

    yield make
    for disk in reversed(made):
        disk.release()
