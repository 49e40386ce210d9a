"""A pytest plugin for tests that read back what mlhooks stored in real MLflow.

Installed with mlhooks-mlflow (entry point ``pytest11``). Nothing here is autouse and
MLflow is imported only by the fixtures that need it, so the plugin costs nothing to a
test session that does not ask for it.

* ``mlflow_tracking_uri``: a fresh sqlite store for the test (copied from one made
  per session: creating MLflow's tables takes seconds), its default experiment's
  artifacts under the test's ``tmp_path``, set as MLflow's tracking URI, the test
  running in ``tmp_path`` (so that experiments it creates keep their artifacts there);
  after the test, MLflow's active runs are ended and its globals reset.
* ``mlflow_server``: a real ``mlflow server`` on 127.0.0.1, started once per session.
* ``new_mlflow_server``: ``new_mlflow_server()`` gives a server of this test that is
  not started yet (its port is closed until ``start()``), stopped after the test. It
  can be killed (``kill()``) or paused (``pause()``, ``resume()``) and started again
  on the same port and store.
* :func:`mlflow_run_of`: the MLflow run of an mlhooks run, once everything is stored.
* :func:`stored_models`: the models stored with an MLflow run, by their mlhooks names,
  as URIs that load them, wherever the store keeps them (MLflow 3's logged models, or
  the run's artifacts).
* :class:`WriteTransactions`: the write transactions of a SQL store (a sqlite store's
  commits that wrote), counted with SQLAlchemy's events in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1, with its sqlite store and artifacts under
    ``root``; it can be stopped and started again on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        """Start the server and wait until it answers ``/health``."""
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log_path = self.root / "server.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout}s")

    def stop(self) -> None:
        """Stop the server and the workers it started (paused or not)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused one takes SIGTERM now
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self.process = None

    def kill(self) -> float:
        """SIGKILL the server and its workers, as a crash would; ``time.monotonic()``
        of the kill. ``start()`` brings it back on the same port and store."""
        assert self.process is not None, "the server is not running"
        killed = time.monotonic()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None
        return killed

    def pause(self) -> float:
        """SIGSTOP the server and its workers: its port still takes connections, but
        nothing answers. ``time.monotonic()`` of the pause."""
        assert self.process is not None, "the server is not running"
        paused = time.monotonic()
        os.killpg(self.process.pid, signal.SIGSTOP)
        return paused

    def resume(self) -> float:
        """SIGCONT a paused server; ``time.monotonic()`` of the resume."""
        assert self.process is not None, "the server is not running"
        resumed = time.monotonic()
        os.killpg(self.process.pid, signal.SIGCONT)
        return resumed

    @property
    def paused(self) -> bool:
        """Whether the server's main process is stopped (SIGSTOP)."""
        if self.process is None:
            return False
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"


def mlflow_run_of(client: Any, run_id: str, timeout: float = 60) -> Any:
    """The MLflow run of mlhooks run ``run_id`` (found by the tag mlhooks sets on it),
    after everything reported so far was stored."""
    import mlhooks

    from .backend import RUN_ID_TAG

    assert mlhooks.flush(timeout), f"mlhooks did not store everything within {timeout}s"
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")
    assert len(runs) == 1, f"{len(runs)} MLflow runs for mlhooks run {run_id}"
    return runs[0]


def stored_models(client: Any, mlflow_id: str) -> dict[str, str]:
    """The models stored with MLflow run ``mlflow_id``: mlhooks name -> a URI that
    loads it, ``models:/<id>`` for a logged model (the latest step's of a name stored
    several times) or ``runs:/<run>/<name>`` for a model among the run's artifacts."""
    from .logged_models import MODEL_NAME_TAG, READY, STEP_TAG

    found: dict[str, str] = {}
    if hasattr(client, "search_logged_models"):
        experiment_id = client.get_run(mlflow_id).info.experiment_id
        models = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{mlflow_id}'"
        )
        ready = [m for m in models if m.status == READY]
        for model in sorted(ready, key=lambda m: int(m.tags.get(STEP_TAG, "0"))):
            found[model.tags.get(MODEL_NAME_TAG, model.name)] = f"models:/{model.model_id}"
    folders = [a for a in client.list_artifacts(mlflow_id) if a.is_dir]
    while folders:
        folder = folders.pop()
        inside = client.list_artifacts(mlflow_id, folder.path)
        if any(a.path.rsplit("/", 1)[-1] in ("MLmodel", "mlhooks-model.json") for a in inside):
            found.setdefault(folder.path, f"runs:/{mlflow_id}/{folder.path}")
        else:
            folders.extend(a for a in inside if a.is_dir)
    return found


class WriteTransactions:
    """Counts the transactions that wrote to a SQL database in this process, while
    entered: each commit after an ``INSERT``, ``UPDATE`` or ``DELETE``, kept as the
    sorted statements it ran (``"INSERT runs"``...). ``database`` (a path or a
    ``sqlite:///`` URI) limits it to that database's engines; by default every engine
    counts. Only this process: a writer service's store is not seen. Also a script:
    loaded by path, it needs SQLAlchemy only (the benchmarks use it so)."""

    _KEY = "mlhooks.pending_writes"

    def __init__(self, database: str | None = None) -> None:
        self.database = str(Path(database.removeprefix("sqlite:///"))) if database else None
        self.transactions: list[tuple[str, ...]] = []

    def __len__(self) -> int:
        return len(self.transactions)

    def __enter__(self) -> WriteTransactions:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._executed)
        event.listen(Engine, "commit", self._committed)
        event.listen(Engine, "rollback", self._rolled_back)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._executed)
        event.remove(Engine, "commit", self._committed)
        event.remove(Engine, "rollback", self._rolled_back)

    def _counts(self, connection: Any) -> bool:
        if self.database is None:
            return True
        name = connection.engine.url.database
        return name is not None and str(Path(name)) == self.database

    def _executed(self, connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split(None, 3)
        verb = words[0].upper() if words else ""
        if verb in ("INSERT", "UPDATE", "DELETE", "REPLACE") and self._counts(connection):
            table = words[1] if verb == "UPDATE" or len(words) < 3 else words[2]
            connection.info.setdefault(self._KEY, set()).add(f"{verb} {table}")

    def _committed(self, connection: Any) -> None:
        written = connection.info.pop(self._KEY, None)
        if written:
            self.transactions.append(tuple(sorted(written)))

    def _rolled_back(self, connection: Any) -> None:
        connection.info.pop(self._KEY, None)


@pytest.fixture(scope="session")
def mlflow_empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables created, to copy for each test."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_empty_store: Path
) -> Iterator[str]:
    """A sqlite store of this test, as ``MLFLOW_TRACKING_URI`` and MLflow's URI."""
    import mlflow

    database = tmp_path / "mlflow.db"
    shutil.copy(mlflow_empty_store, database)
    # The template's default experiment keeps its artifacts where the template was made:
    # this test's go under its own folder.
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(tmp_path / "mlruns" / "0"),),
        )
    uri = f"sqlite:///{database}"
    # Experiments a test creates keep their artifacts in MLflow's default ./mlruns:
    # the test's folder, not the checkout the tests run from.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # mlflow.set_experiment sets it
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: MLflow's own default
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A running ``mlflow server`` shared by the session's tests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_mlflow_server(tmp_path: Path) -> Iterator[Callable[[], MlflowServer]]:
    """Servers of this test, not started yet; each is stopped after the test."""
    made: list[MlflowServer] = []

    def make() -> MlflowServer:
        server = MlflowServer(tmp_path / f"mlflow-server-{len(made)}")
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
