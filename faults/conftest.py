"""The fault-injection suite: each case runs a real script in a fresh interpreter
against a real store, injects one fault, and reads back what landed.

``store`` runs a case once per backend that keeps what the case checks: the embedded
local store and MLflow (a real sqlite store; the fixtures come from the pytest plugin
``mlhooks_mlflow.testing``). Cases say what must hold in their docstrings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from disks import SmallDisk
from mlhooks.core import settings
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


SERVICE = bool(settings.get("MLHOOKS_SERVICE"))
"""The suite runs with the writer service (the default; ``MLHOOKS_SERVICE=0 pytest
faults`` runs it without): the backends that run there (MLflow, TensorBoard) are
written by a child process of each script, which may still be storing when the script
has exited."""


@dataclass
class Store:
    """A backend under test: the environment that sends a script's runs to it, and
    how to read them back."""

    kind: str
    env: dict[str, str]
    root: Path

    @property
    def in_service(self) -> bool:
        """Whether this store is written by the writer service in this session."""
        return SERVICE and self.kind != "local"

    def all_runs(self) -> list[StoredRun]:
        """Every run stored (once the writer services of the scripts are done)."""
        self.settle()
        return _read_local(self.root) if self.kind == "local" else _read_mlflow(self.env)

    def settle(self) -> None:
        """Wait until the writer services of this store's scripts are done."""
        wait_for_services(self.root)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``mlhooks <args>`` with this store's environment, once its services are done."""
        return mlhooks_cli(*args, root=self.root, env=self.env)

    def runs(self) -> dict[str, StoredRun]:
        """Every run stored, by name (for runs whose names are unique)."""
        return {run.name: run for run in self.all_runs()}

    def run(self, name: str) -> StoredRun:
        runs = self.runs()
        assert name in runs, f"no run {name!r} in the {self.kind} store: {sorted(runs)}"
        return runs[name]

    def script(self, code: str, cwd: str | None = None, **env: str) -> Any:
        """Run ``code`` in a fresh interpreter writing to this store (in ``cwd``); done
        once its writer service is."""
        done = run_script(code, env={**self.env, **env}, cwd=cwd)
        self.settle()
        return done


def mlhooks_cli(
    *args: str,
    root: Path,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``mlhooks <args>`` in a fresh process, as a user runs it after their script:
    over the store at ``root`` (``MLHOOKS_LOCAL_DIR``), once the scripts' writer
    services there are done."""
    wait_for_services(root)
    return subprocess.run(
        [sys.executable, "-m", "mlhooks", *args],
        env={**os.environ, "MLHOOKS_LOCAL_DIR": str(root), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_services(root: Path, timeout: float = 120) -> None:
    """Wait until no writer service still delivers a journal under ``root`` (a
    script's service finishes after the script, within its exit timeout)."""
    deadline = time.monotonic() + timeout
    while services_alive(root):
        assert time.monotonic() < deadline, f"writer services still busy in {root}"
        time.sleep(0.05)


def finish_dead_journals(root: Path, env: dict[str, str]) -> str:
    """What finishes the journals of a process that died, as a user sees it: with the
    writer service, the dead process's service stores them itself and ends its runs
    KILLED (nothing to run afterwards); without, ``mlhooks sync`` does. Returns what
    ``sync`` printed (with the service: that nothing was left)."""
    journals = sorted((root / ".journal").glob("*.journal"))
    if SERVICE and env.get("MLHOOKS_BACKENDS") != "local":  # the local store stays in process
        wait_for_services(root)
        synced = mlhooks_cli("sync", root=root, env=env)
        assert synced.returncode == 0, synced.stderr
        assert synced.stdout.startswith("nothing to sync"), synced.stdout
        return synced.stdout
    assert journals, "the dead process left its journal"
    synced = mlhooks_cli("sync", root=root, env=env)
    assert synced.returncode == 0, synced.stderr
    assert "ended KILLED" in synced.stdout
    return synced.stdout


def services_alive(root: Path) -> list[int]:
    """The pids of live writer services delivering journals under ``root``."""
    alive = []
    try:
        markers = list((root / ".journal").glob("*.journal.service"))
    except FileNotFoundError:
        markers = []  # the service removed the folder with its last journal meanwhile
    for marker in markers:
        try:
            pid = int(marker.read_text().split()[0])  # "<pid>" or "<pid> held"
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue  # gone, or its marker half written
        if state != "Z":  # a zombie no one reaped is done
            alive.append(pid)
    return alive


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
