"""A new sqlite store starts as a copy of MLflow's migrated schema (``fresh_store``):
the same store MLflow would have made, made once per machine; anything odd (a store
already there, a spoiled template, a cache that cannot be written) is left to MLflow."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mlflow.store.db import utils as db_utils
from mlflow.tracking import MlflowClient

from mlhooks.testing import wait_for_services
from mlhooks_mlflow import fresh_store
from mlhooks_mlflow.backend import _open_client


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's cache folder (``XDG_CACHE_HOME``)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture
def migrations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases MLflow runs its migrations on, from now on (its own function,
    called through)."""
    ran: list[str] = []
    original: Callable[[Any], None] = db_utils._initialize_tables

    def initialize_tables(engine: Any) -> None:
        ran.append(str(engine.url))
        original(engine)

    monkeypatch.setattr(db_utils, "_initialize_tables", initialize_tables)
    return ran


def _schema(database: Path) -> dict[str, Any]:
    """What a store holds apart from when it was made: its tables' and indexes' SQL,
    its schema revision, its experiments (without their times) and its other rows."""
    with closing(sqlite3.connect(database)) as connection:
        objects = sorted(
            (kind, name, _clauses(sql))
            for kind, name, sql in connection.execute("SELECT type, name, sql FROM sqlite_master")
        )
        tables = [name for kind, name, _ in objects if kind == "table"]
        rows = {
            table: sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"')))
            for table in tables
            if table not in ("experiments", "alembic_version")
        }
        experiments = sorted(
            connection.execute(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments"
            )
        )
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return {"objects": objects, "rows": rows, "experiments": experiments, "revision": revision}


def _clauses(sql: str | None) -> list[str]:
    """A ``CREATE`` statement's clauses, sorted: MLflow's migrations write a table's
    constraints in an order that varies from one run to the next."""
    return sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())


def test_a_new_store_is_a_copy_of_the_template_and_the_store_mlflow_makes(
    tmp_path: Path, cache: Path, migrations: list[str]
) -> None:
    by_mlflow, first, second = (tmp_path / name / "mlflow.db" for name in ("a", "b", "c"))
    for database in (by_mlflow, first, second):
        database.parent.mkdir()  # MLflow 2 makes no folders for a store
    MlflowClient(f"sqlite:///{by_mlflow}").search_experiments()  # MLflow alone
    assert len(migrations) == 1

    _open_client(f"sqlite:///{first}").search_experiments()  # migrates the template
    assert fresh_store.template_path().exists()
    assert len(migrations) == 2 and str(cache) in migrations[1]
    _open_client(f"sqlite:///{second}").search_experiments()  # a copy
    assert len(migrations) == 2

    expected = _schema(by_mlflow)
    assert expected["experiments"] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active")]
    assert _schema(first) == expected
    assert _schema(second) == expected
    assert second.stat().st_mode & 0o777 == by_mlflow.stat().st_mode & 0o777
    assert sorted(p.name for p in second.parent.iterdir()) == ["mlflow.db"]  # no scratch


def test_a_store_already_there_even_empty_is_left_to_mlflow(
    tmp_path: Path, cache: Path, migrations: list[str]
) -> None:
    database = tmp_path / "empty" / "mlflow.db"
    database.parent.mkdir()
    database.touch()
    assert fresh_store.start_from_template(f"sqlite:///{database}") is None
    client = _open_client(f"sqlite:///{database}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert migrations == [f"sqlite:///{database}"]


def test_switched_off_no_template_is_made(
    tmp_path: Path, cache: Path, migrations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_MLFLOW_STORE_TEMPLATE", "0")
    database = tmp_path / "off" / "mlflow.db"
    database.parent.mkdir()
    _open_client(f"sqlite:///{database}").search_experiments()
    assert not cache.exists()
    assert migrations == [f"sqlite:///{database}"]


def test_other_stores_are_left_to_mlflow(cache: Path, tmp_path: Path) -> None:
    for uri in (
        "http://127.0.0.1:5000",
        "sqlite:///:memory:",
        "postgresql://u@127.0.0.1/db",
        f"sqlite:///{tmp_path}/my%20runs.db",  # SQLAlchemy unescapes it: not this path
        f"sqlite:///{tmp_path}/opts.db?timeout=30",
        "sqlite:///file:shared?mode=memory&uri=true",  # sqlite's own URI
    ):
        assert fresh_store.start_from_template(uri) is None, uri
    assert not cache.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("my", "opts"))]


def test_a_relative_cache_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fresh_store.cache_folder() == tmp_path / "home" / ".cache" / "mlhooks" / "mlflow-stores"


def test_a_script_into_a_new_store_through_the_service(tmp_path: Path, cache: Path) -> None:
    """Two scripts, each into a store that does not exist yet, with the writer service:
    the first migrates the template, the second copies it; both runs are there."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import numpy as np
            from sklearn.linear_model import Ridge
            import mlhooks
            mlhooks.autolog()
            X = np.random.default_rng(0).normal(size=(50, 3))
            with mlhooks.start_run(sys.argv[1]):
                Ridge().fit(X, X.sum(axis=1))
            """
        )
    )
    for name in ("first", "second"):
        store = tmp_path / name / "mlflow.db"
        env = {
            **{k: v for k, v in os.environ.items() if k != "MLHOOKS_BACKENDS"},
            "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
            "MLHOOKS_LOCAL_DIR": str(tmp_path / "mlhooks-runs"),
            "MLHOOKS_SERVICE": "1",
        }
        done = subprocess.run(
            [sys.executable, str(script), name], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert wait_for_services(tmp_path / "mlhooks-runs", 120)
        runs = MlflowClient(f"sqlite:///{store}").search_runs(["0"])
        assert [(r.info.run_name, r.info.status) for r in runs] == [(name, "FINISHED")]
    assert fresh_store.template_path().exists()
