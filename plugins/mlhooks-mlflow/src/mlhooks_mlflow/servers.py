"""Real MLflow tracking servers for tests and benchmarks, on 127.0.0.1.

* :class:`MlflowServer`: ``mlflow server`` on a sqlite store (or any store URI given),
  with its artifacts proxied from a folder; it can be killed, paused and started again
  on the same port and store.
* :class:`TeamServer`: the same on a PostgreSQL database (see :mod:`.postgres`), as a
  team runs it: clients see ``mlflow-artifacts:`` URIs and upload through the server.
  :meth:`TeamServer.reset` empties its store between tests, as a fresh store would be.

Where ``mlflow server`` runs on gunicorn (MLflow 2), its workers are given threads and
log each request (:data:`GUNICORN_ARGS`), so that a server behaves as on MLflow 3's
uvicorn: each worker answers many requests at once, and its log shows them.

Nothing here imports pytest or MLflow.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .postgres import Postgres


GUNICORN_THREADS = 40
"""Threads of each gunicorn worker: as many requests at once as a uvicorn worker of
MLflow 3 takes (it runs MLflow's Flask app on anyio's 40 threads). gunicorn's default,
one request at a time, lets a request that waits on a lock of the database hold up every
other one, ``/health`` included: clients then see the server as down."""
GUNICORN_ARGS = f"--threads {GUNICORN_THREADS} --access-logfile -"
"""gunicorn's options, read from ``GUNICORN_CMD_ARGS`` (uvicorn ignores it): threads,
and each request logged to the server's log as uvicorn does."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1, with its artifacts (and its sqlite store,
    unless ``backend_store_uri`` names another) under ``root``; it can be stopped and
    started again on the same port. ``workers``: its uvicorn (MLflow 2: gunicorn)
    worker processes; ``jobs``: whether it runs MLflow's job runners (GenAI scorers and
    trace rollups: half a dozen processes that tracking does not need, which take
    seconds of CPU to start and stop)."""

    def __init__(
        self,
        root: Path,
        backend_store_uri: str | None = None,
        workers: int = 1,
        jobs: bool = False,
    ) -> None:
        self.root = root
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'server.db'}"
        self.workers = workers
        self.jobs = jobs
        self._placeholder: socket.socket | None = socket.socket()
        """Bound to the port, not listening, while the server is down (see :meth:`_hold_port`)."""
        self._placeholder.bind(("127.0.0.1", 0))
        self.port = int(self._placeholder.getsockname()[1])
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def _hold_port(self) -> None:
        """While the server is down, keep its port bound without listening: a client
        is refused, as by a server that is gone, and no other program (a Ray worker's
        gRPC server, say) takes the port meanwhile. Best effort: right after the
        server's end, its connections' TIME_WAIT may keep the port from being bound."""
        if self._placeholder is not None:
            return
        placeholder = socket.socket()
        try:
            placeholder.bind(("127.0.0.1", self.port))
        except OSError:
            placeholder.close()
            return
        self._placeholder = placeholder

    def _release_port(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def start(self, timeout: float = 180) -> None:
        """Start the server and wait until it answers ``/health``."""
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        env = dict(os.environ)
        env["GUNICORN_CMD_ARGS"] = GUNICORN_ARGS
        if not self.jobs:
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        log_path = self.root / "server.log"
        self._release_port()
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
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
        """Stop the server and the workers it started (paused or not), and let go of
        its port."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused one takes SIGTERM now
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self.process = None
        self._release_port()  # done with it

    def kill(self) -> float:
        """SIGKILL the server and its workers, as a crash would; ``time.monotonic()``
        of the kill. ``start()`` brings it back on the same port and store."""
        assert self.process is not None, "the server is not running"
        killed = time.monotonic()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None
        self._hold_port()
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


_SNAPSHOT = "mlhooks_start"
"""The schema keeping what a :class:`TeamServer`'s store held when it first started."""


class TeamServer(MlflowServer):
    """``mlflow server`` on PostgreSQL database ``database`` (created empty unless it
    exists: the server creates MLflow's tables as it starts), its artifacts proxied
    from ``root``.

    The first start keeps what the server put in its fresh store (the default
    experiment, MLflow's default workspace); :meth:`reset` brings the store back to
    that, for the next test. MLflow's job runners are off unless ``jobs``.
    """

    def __init__(
        self,
        root: Path,
        postgres: Postgres,
        database: str,
        workers: int = 1,
        jobs: bool = False,
    ) -> None:
        with postgres.connect() as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
        if not exists:
            postgres.create_database(database)
        super().__init__(root, backend_store_uri=postgres.url(database), workers=workers, jobs=jobs)
        self.postgres = postgres
        self.database = database
        self._reset_sql: str | None = None

    def start(self, timeout: float = 180) -> None:
        super().start(timeout)
        if self._reset_sql is None:
            self._reset_sql = self._snapshot()

    def _snapshot(self) -> str:
        """Copy the tables that hold rows now into :data:`_SNAPSHOT`; the statements
        that empty every table and put those rows back."""
        with self.postgres.connect(self.database) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version' ORDER BY tablename"
                )
            ]
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_SNAPSHOT}")
            kept = []
            for table in tables:
                if connection.execute(f'SELECT 1 FROM public."{table}" LIMIT 1').fetchone():
                    connection.execute(
                        f'CREATE TABLE {_SNAPSHOT}."{table}" AS TABLE public."{table}"'
                    )
                    kept.append(table)
        statements = [
            "SET LOCAL session_replication_role = replica",  # no foreign key checks
            "SET LOCAL lock_timeout = '60s'",
            *(f'DELETE FROM public."{table}"' for table in tables),
            *(
                f'INSERT INTO public."{table}" SELECT * FROM {_SNAPSHOT}."{table}"'
                for table in kept
            ),
        ]
        return "; ".join(statements)

    def reset(self) -> None:
        """Empty the store, but for what the server itself put there when it first
        started: as if the server had just started on a new database. Runs,
        experiments, models and their ids are gone; artifacts stay on disk."""
        assert self._reset_sql is not None, "the server never started"
        with self.postgres.connect(self.database) as connection, connection.transaction():
            connection.execute(self._reset_sql)

    def count_inserts(self, key: str) -> None:
        """From now on, count every row of metric ``key`` that an INSERT into MLflow's
        ``metrics`` table tries, stored or not (:meth:`inserts_tried`). MLflow's store
        drops a point it already holds (same key, step, timestamp and value), so a point
        sent twice never shows as a second row; this counter sees it. A row refused as
        a duplicate makes MLflow insert the rest of its batch again, so the count is
        exact while nothing is sent twice, and an upper bound otherwise."""
        from psycopg import sql

        function = """
            CREATE OR REPLACE FUNCTION mlhooks_count_insert() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('mlhooks_tried_inserts');
            RETURN NEW; END $$"""
        trigger = sql.SQL(
            "CREATE TRIGGER mlhooks_count_inserts BEFORE INSERT ON metrics FOR EACH ROW "
            "WHEN (NEW.key = {}) EXECUTE FUNCTION mlhooks_count_insert()"
        ).format(sql.Literal(key))
        with self.postgres.connect(self.database) as connection:
            # A sequence is not rolled back with the transaction that moved it.
            connection.execute("CREATE SEQUENCE mlhooks_tried_inserts")
            connection.execute(function)
            connection.execute(trigger)

    def inserts_tried(self) -> int:
        """Rows of the key given to :meth:`count_inserts` tried so far."""
        with self.postgres.connect(self.database) as connection:
            row = connection.execute(
                "SELECT last_value, is_called FROM mlhooks_tried_inserts"
            ).fetchone()
        assert row is not None
        return int(row[0]) if row[1] else 0
