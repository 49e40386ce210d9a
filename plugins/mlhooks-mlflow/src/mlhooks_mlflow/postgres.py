"""A throwaway PostgreSQL server, for tests and benchmarks of a team's MLflow setup.

:class:`Postgres` initializes a database cluster in a new folder of the system's
temporary directory (never inside a checkout), serves it on a free port of 127.0.0.1
only (and a Unix socket in that folder), and removes it all when stopped. PostgreSQL
refuses to run as root: as root, its programs run as the ``postgres`` user (which
Debian's ``postgresql`` package creates) through ``runuser``. Clients connect as the
superuser ``postgres``, trusted on that port. Its programs are found on ``PATH``, else
under ``/usr/lib/postgresql/<version>/bin`` (where Debian keeps them), the newest.

Needs ``psycopg`` (``pip install 'psycopg[binary]'``), which MLflow 3's
``postgresql+psycopg://`` URIs use too. MLflow 2's store compares its integer experiment
ids with strings, which psycopg 3 sends typed (PostgreSQL then refuses the query): with
MLflow 2, :meth:`Postgres.url` names psycopg2 (``pip install psycopg2-binary``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .servers import free_port

PROGRAMS = ("initdb", "pg_ctl")
SERVICE_USER = "postgres"
"""The user PostgreSQL runs as when the caller is root."""


def mlflow_driver() -> str:
    """The SQLAlchemy driver an MLflow store on PostgreSQL uses here: psycopg 3 with
    MLflow 3, psycopg2 with MLflow 2 (see the module's docstring)."""
    major = int(importlib.metadata.version("mlflow").split(".")[0])
    return "postgresql+psycopg" if major >= 3 else "postgresql+psycopg2"


def programs_folder() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (symbolic links followed): the
    one on ``PATH``, else the newest ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which("pg_ctl")
    if found is not None:
        folder = Path(found).resolve().parent
        if all((folder / name).is_file() for name in PROGRAMS):
            return folder
    versions = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if (path.parent / "initdb").is_file()
    ]
    return max(versions, key=_version_key, default=None)


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name))


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None if it can."""
    if programs_folder() is None:
        return (
            "PostgreSQL is not installed (no initdb and pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin; on Debian: apt-get install postgresql)"
        )
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if mlflow_driver().endswith("psycopg2") and importlib.util.find_spec("psycopg2") is None:
        return "MLflow 2 on PostgreSQL needs psycopg2 (pip install psycopg2-binary)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "PostgreSQL does not run as root, and runuser (to run it as another) is missing"
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"PostgreSQL does not run as root, and there is no {SERVICE_USER!r} user"
    return None


class Postgres:
    """A PostgreSQL server of its own, on 127.0.0.1.

    Args:
        durable: whether commits wait for the disk, as a production server's do
            (benchmarks); off, commits are cheap and a crash may lose them (tests).
    """

    def __init__(self, durable: bool = False) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        folder = programs_folder()
        assert folder is not None
        self.programs = folder
        self.durable = durable
        self.port = free_port()
        self.root: Path | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    def start(self) -> None:
        """Create the cluster in a new temporary folder and start the server."""
        self.root = Path(tempfile.mkdtemp(prefix="mlhooks-postgres-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "300",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-w", "-t", "120",
            "-l", str(self.root / "server.log"), "-o", options,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server (its sessions rolled back) and delete its folder."""
        if self.root is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def log(self) -> str:
        """What the server wrote to its log so far."""
        path = self.root / "server.log" if self.root is not None else None
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def url(self, database: str, driver: str | None = None) -> str:
        """The URI of ``database`` on this server, as SQLAlchemy (and MLflow) take it;
        by default with the driver of the installed MLflow (:func:`mlflow_driver`)."""
        return f"{driver or mlflow_driver()}://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg connection to ``database`` in autocommit mode."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def create_database(self, name: str) -> None:
        """Create the empty database ``name``."""
        from psycopg import sql

        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.programs / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=180, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}{self.log()}"
            )

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
