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
* The team server: a test decorated with :data:`also_on_team_server` runs twice, once
  as above and once (marked ``team_server``) where ``mlflow_tracking_uri`` is the
  session's ``team_server`` (an ``mlflow server`` on PostgreSQL with proxied
  artifacts, emptied for each test; a test may stop and start it again, and must leave
  it running); :data:`on_team_server` runs it there only. Where PostgreSQL is
  not installed these tests skip, saying why, unless the ``CI`` variable is set: then
  they fail. ``-m "not team_server"`` deselects them.
* :func:`mlflow_run_of`: the MLflow run of an mlhooks run, once everything is stored.
* :func:`stored_models`: the models stored with an MLflow run, by their mlhooks names,
  as URIs that load them, wherever the store keeps them (MLflow 3's logged models, or
  the run's artifacts).
* :class:`WriteTransactions`: the write transactions of a SQL store (a sqlite store's
  commits that wrote), counted with SQLAlchemy's events in this process.
* :func:`requires_mlflow3`: skips a test of an MLflow 3 feature under MLflow 2 (the
  plugin is also tested on its oldest supported MLflow, 2.14), naming the feature.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from . import postgres
from .servers import MlflowServer, TeamServer, free_port

__all__ = [
    "MlflowServer",
    "TeamServer",
    "also_on_team_server",
    "free_port",
    "mlflow_run_of",
    "on_team_server",
    "requires_mlflow3",
    "stored_models",
]

TEAM_SERVER_MARK = "team_server"
_TEAM = pytest.param("team", marks=getattr(pytest.mark, TEAM_SERVER_MARK), id="team")
also_on_team_server = pytest.mark.parametrize("mlflow_store", ["sqlite", _TEAM])
"""Run the test twice: on a sqlite store and on the session's team server."""
on_team_server = pytest.mark.parametrize("mlflow_store", [_TEAM])
"""Run the test on the session's team server only."""

MLFLOW_VERSION = importlib.metadata.version("mlflow")
"""The installed MLflow's version, read without importing MLflow."""


def requires_mlflow3(feature: str) -> pytest.MarkDecorator:
    """Skip the test under MLflow 2: ``feature`` (what the test is about) is MLflow 3's."""
    return pytest.mark.skipif(
        int(MLFLOW_VERSION.split(".")[0]) < 3,
        reason=f"{feature} needs MLflow 3 (MLflow {MLFLOW_VERSION} is installed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{TEAM_SERVER_MARK}: runs against an mlflow server on PostgreSQL (skipped where "
        "PostgreSQL is not installed, unless CI is set; deselect with -m 'not team_server')",
    )


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
def mlflow_store() -> str:
    """Which store this test's MLflow fixtures make: ``"sqlite"``, or ``"team"`` in a
    test marked with :data:`also_on_team_server` or :data:`on_team_server`."""
    return "sqlite"


@pytest.fixture
def mlflow_tracking_uri(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_store: str,
) -> Iterator[str]:
    """A store of this test, as ``MLFLOW_TRACKING_URI`` and MLflow's URI: a sqlite
    store of its own, or the session's team server, emptied for it."""
    import mlflow

    if mlflow_store == "team":
        server: TeamServer = request.getfixturevalue("team_server")
        server.reset()
        uri = server.uri
    else:
        uri = _sqlite_store(tmp_path, request.getfixturevalue("mlflow_empty_store"))
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


def _sqlite_store(tmp_path: Path, template: Path) -> str:
    """A copy of ``template`` in ``tmp_path``, its default experiment's artifacts there
    too (rather than where the template was made); its URI."""
    database = tmp_path / "mlflow.db"
    shutil.copy(template, database)
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(tmp_path / "mlruns" / "0"),),
        )
    return f"sqlite:///{database}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A running ``mlflow server`` shared by the session's tests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_mlflow_server(tmp_path: Path) -> Iterator[Callable[[], MlflowServer]]:
    """Servers of this test (on sqlite), not started yet; each is stopped after the
    test."""
    made: list[MlflowServer] = []

    def make() -> MlflowServer:
        server = MlflowServer(tmp_path / f"mlflow-server-{len(made)}")
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def _require_postgres() -> None:
    """Skip the test, or fail it where CI is set, when PostgreSQL cannot run here."""
    reason = postgres.unavailable()
    if reason is None:
        return
    message = (
        f"team-server tests need PostgreSQL: {reason}; deselect them with "
        f"-m 'not {TEAM_SERVER_MARK}'"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: they must run there)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def team_postgres() -> Iterator[postgres.Postgres]:
    """A PostgreSQL server of this session, on 127.0.0.1, removed at its end."""
    _require_postgres()
    cluster = postgres.Postgres()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def team_server(
    team_postgres: postgres.Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TeamServer]:
    """A running ``mlflow server`` on PostgreSQL with proxied artifacts, shared by the
    session's tests (``mlflow_tracking_uri`` empties it for each)."""
    server = TeamServer(tmp_path_factory.mktemp("team-server"), team_postgres, "team")
    server.start()
    yield server
    server.stop()
