"""A new sqlite store starts as a copy of MLflow's schema, migrated once per machine.

MLflow makes a new sqlite store by running its schema migrations, one by one, in the
first process that opens it: about 2 s, paid by every new store (a new project, a
test's temporary store, a demo), and with the writer service before the first run is
stored. Until MLflow adds its default experiment, a freshly migrated store is the same
file whatever its path. So the MLflow backend migrates one once, into the user's cache
folder (one per MLflow and SQLAlchemy version), and starts each sqlite store that does
not exist yet as a copy of it. MLflow then opens the copy as a store it made itself:
it checks the schema's revision and adds the default experiment, with this store's
artifact root. A template is checked before each copy (a sound database, at MLflow's
newest revision, with no rows but the migrations' own); one that is not is migrated
again.

A store that exists (even as an empty file), a server and other databases are left to
MLflow; so is every store when the cache folder cannot be written, and with
``MLHOOKS_MLFLOW_STORE_TEMPLATE=0``. The copy appears whole or not at all (a hard link
that never replaces a file): a process of the user's opening the same new store at that
moment finds either no file (and migrates it, as always) or the whole schema.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlhooks.plugin import declare_setting, parse_flag, setting

from .races import sqlite_path

TEMPLATE_SETTING = declare_setting(
    "MLHOOKS_MLFLOW_STORE_TEMPLATE",
    parse_flag,
    True,
    "start a new sqlite MLflow store as a copy of MLflow's schema, migrated once into "
    "the user's cache folder, instead of migrating each new store (2 s)",
    owner="mlhooks-mlflow",
)


def cache_folder() -> Path:
    """Where the templates are kept: ``$XDG_CACHE_HOME/mlhooks/mlflow-stores``
    (``~/.cache`` when it is unset or not absolute, as the XDG rules say)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "mlhooks" / "mlflow-stores"


def template_path() -> Path:
    """The template of this MLflow and SQLAlchemy (each version migrates its own)."""
    import mlflow
    import sqlalchemy

    return cache_folder() / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"


_failed: set[Path] = set()
"""Templates this process could not make (a cache it cannot write): not tried again."""


def start_from_template(tracking_uri: str) -> Path | None:
    """Make the sqlite store of ``tracking_uri`` a copy of the migrated template when
    no file is there; the store's path when it did, else None (MLflow creates it)."""
    try:
        database = _plain_sqlite_path(tracking_uri)
        if database is None or database.exists() or not setting(TEMPLATE_SETTING.name):
            return None
        template = template_path()
        if template in _failed:
            return None
        if not is_current(template):  # none yet, or spoiled: migrated (again)
            _failed.add(template)  # until it is made
            _migrate_template(template)
            if not is_current(template):
                return None
            _failed.discard(template)
        database.parent.mkdir(parents=True, exist_ok=True)
        return database if _copy_new(template, database) else None
    except Exception:  # noqa: BLE001 - no home, a full or read-only disk: MLflow's way
        return None


def _plain_sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI that names a plain path: one with options
    (``?mode=...``), percent-escapes or sqlite's own ``file:`` URIs is left to MLflow."""
    database = sqlite_path(tracking_uri)
    if database is None or "?" in tracking_uri or "%" in tracking_uri:
        return None
    return None if tracking_uri[len("sqlite:///") :].startswith("file:") else database


_TEMPLATE_ROWS = frozenset({"alembic_version", "workspaces"})
"""The tables a migrated store fills itself (its revision; MLflow's default workspace)."""


def is_current(template: Path) -> bool:
    """Whether ``template`` is a sound sqlite database at this MLflow's newest schema
    revision, with no rows but the migrations' own (20 ms, once per new store)."""
    if not template.is_file():
        return False
    try:
        reading = sqlite3.connect(f"{template.as_uri()}?mode=ro", uri=True)
        with contextlib.closing(reading) as database:
            sound = database.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            revisions = database.execute("SELECT version_num FROM alembic_version").fetchall()
            tables = [
                name
                for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if name not in _TEMPLATE_ROWS and not name.startswith("sqlite_")
            ]
            filled = any(
                database.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() for name in tables
            )
    except sqlite3.Error:
        return False
    newest = _db_utils()._get_latest_schema_revision()
    return sound and not filled and revisions == [(newest,)]


def _migrate_template(template: Path) -> None:
    """Run MLflow's migrations on a file beside ``template``, then put it in place. The
    file is created first (MLflow's engine would retry for a minute and a half on a
    folder it cannot write)."""
    utils = _db_utils()
    template.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_beside(template) as (scratch, handle):
        os.close(handle)
        engine = utils.create_sqlalchemy_engine(f"sqlite:///{scratch}")
        try:
            utils._initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(scratch, template)  # whole or not at all (several may race: all alike)


def _db_utils() -> Any:
    """MLflow's database helpers (untyped)."""
    return importlib.import_module("mlflow.store.db.utils")


def _copy_new(template: Path, database: Path) -> bool:
    """Copy ``template`` to ``database`` unless a file appeared there; True if copied."""
    with _scratch_beside(database) as (scratch, handle):
        with os.fdopen(handle, "wb") as target, template.open("rb") as source:
            while chunk := source.read(1 << 20):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())  # whole on disk before it has its name
        try:
            os.link(scratch, database)  # never replaces: someone else's store stays
        except FileExistsError:
            return False
        return True


@contextlib.contextmanager
def _scratch_beside(path: Path) -> Iterator[tuple[Path, int]]:
    """A new file beside ``path`` (made at once, mode 0644 as sqlite makes its files,
    so that a folder that cannot be written fails here) and its open descriptor;
    removed afterwards unless it was moved away."""
    scratch = path.parent / f".{path.name}.{uuid.uuid4().hex}"
    handle = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        yield scratch, handle
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
