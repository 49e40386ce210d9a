"""Several processes on one SQL store: creating a store is serialized, and the races
of a shared database are transient, retried rather than set aside.

MLflow stores a run's dataset, param or tag by looking for it and inserting it when it
is not there. Two writers doing so at the same moment (two runs registering one
dataset; processes sharing a run, as an Optuna study's do) both insert, and the
database refuses the second: a unique-key violation (on PostgreSQL ``duplicate key
value violates unique constraint "dataset_pk"``), which a tracking server returns as a
``BAD_REQUEST`` with the database's message. Tried again, the operation finds the row
there and goes on (or gets MLflow's own verdict, such as a param changing its value):
:func:`is_transient_race` says so for the keys of those tables, whatever the database
(PostgreSQL, MySQL, sqlite) and whether the error comes from the store or the server.

MLflow creates a fresh sqlite store by running its schema migrations in the first
process that opens it; two processes doing so at once break each other's migration
(``table _alembic_tmp_metrics already exists``, ``duplicate column name: step``) and
can leave the file half-migrated for good. :func:`store_creation_lock` makes the
processes of one machine take turns: the first creates the schema, the others find
it there. Lock files live in the system's temporary folder, never beside the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "already exists",  # a schema migration raced by another process
    "duplicate column name",
    "no such table",  # a store another process is still creating
    "disk i/o error",
    "could not serialize access",
    "deadlock detected",
)
_RACED_TABLES = {  # table: its primary key's name (MLflow's schema)
    "datasets": "dataset_pk",  # two runs registering one dataset at the same moment
    "params": "param_pk",  # processes logging one param of a shared run
    "tags": "tag_pk",
    "latest_metrics": "latest_metric_pk",
    "experiment_tags": "experiment_tag_pk",
    "inputs": "inputs_pk",
    "input_tags": "input_tags_pk",
}
_RACED_KEYS = tuple(
    words
    for table, key in _RACED_TABLES.items()
    for words in (
        f'unique constraint "{key}"',  # PostgreSQL
        f"unique constraint failed: {table}.",  # sqlite
        f"for key '{table}.primary'",  # MySQL
    )
)
_SQL_ERRORS = ("OperationalError", "IntegrityError", "DatabaseError", "MlflowException")
"""Errors (by class name, or a base class's: a server's RestException is an
MlflowException) whose message may tell of a race."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


@contextlib.contextmanager
def store_creation_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock of this machine for the store at ``tracking_uri`` (a
    no-op for stores that are not sqlite files, and where ``fcntl`` is missing)."""
    database = sqlite_path(tracking_uri)
    try:
        import fcntl
    except ImportError:  # Windows: MLflow's own behaviour
        fcntl = None  # type: ignore[assignment]
    if database is None or fcntl is None:
        yield
        return
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "mlhooks-locks"
    folder.mkdir(exist_ok=True)
    with open(folder / f"{digest}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def is_transient_race(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a race of several writers on one SQL
    store, which the same operation survives when it is tried again."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(kind.__name__ in _SQL_ERRORS for kind in type(current).__mro__):
            message = str(current).lower()
            if any(words in message for words in (*_TRANSIENT_MESSAGES, *_RACED_KEYS)):
                return True
        current = current.__cause__ or current.__context__
    return False
