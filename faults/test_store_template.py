"""The template a new sqlite MLflow store is copied from (``mlhooks_mlflow.fresh_store``)
when it is spoiled, cannot be written, or several processes create one store at once:
training finishes, every run lands once in a store MLflow accepts, and a spoiled
template is made again rather than copied.

Each case runs real training scripts in fresh interpreters, in whichever mode the suite
runs (with the writer service or without), into a store that does not exist yet."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from disks import SmallDisk
from mlhooks.testing import run_script, wait_for_services
from mlhooks_mlflow import fresh_store

TRAINING = """
    import sys
    import numpy as np
    from sklearn.linear_model import Ridge
    import mlhooks

    mlhooks.autolog()
    X = np.random.default_rng(0).normal(size=(40, 3))
    with mlhooks.start_run(sys.argv[1] if len(sys.argv) > 1 else "fit"):
        Ridge().fit(X, X.sum(axis=1))
        for step in range(20):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
"""


@pytest.fixture
def new_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of scripts writing into ``new/mlflow.db`` (not there yet), with a
    cache folder of this test's; the test (and so its scripts) runs in ``tmp_path``,
    where experiments of a store MLflow makes keep their artifacts (``./mlruns``)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # template_path() here
    monkeypatch.chdir(tmp_path)
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}",
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "mlhooks-runs"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MLHOOKS_STRICT": "0",
        "MLHOOKS_BACKENDS": "mlflow",
    }


def _landed(env: dict[str, str]) -> dict[str, tuple[str, list[int]]]:
    """The runs of the store: status and loss steps, by name."""
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {
        run.info.run_name: (
            run.info.status,
            sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")),
        )
        for run in runs
        if run.info.run_name != "Ridge"  # only the runs the scripts opened
    }


def _garbage(template: Path) -> None:
    template.write_bytes(b"not a database " * 4096)


def _half(template: Path) -> None:
    template.write_bytes(template.read_bytes()[: template.stat().st_size // 2])


def _sql(statement: str) -> Callable[[Path], None]:
    def spoil(template: Path) -> None:
        with closing(sqlite3.connect(template)) as connection, connection:
            connection.execute(statement)

    return spoil


SPOILERS: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage,
    "truncated": _half,
    "older-revision": _sql("UPDATE alembic_version SET version_num = '0a8213491aaa'"),
    "with-an-experiment": _sql(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage)"
        " VALUES (7, 'stale', '/elsewhere/7', 'active')"
    ),
}


@pytest.mark.parametrize("spoil", SPOILERS.values(), ids=SPOILERS.keys())
def test_a_spoiled_template_is_made_again_and_the_store_is_mlflows(
    new_store: dict[str, str], spoil: Callable[[Path], None]
) -> None:
    template = fresh_store.template_path()
    assert run_script(TRAINING, new_store).returncode == 0  # makes the template
    assert fresh_store.is_current(template)
    spoil(template)
    assert not fresh_store.is_current(template)

    second = {**new_store, "MLFLOW_TRACKING_URI": new_store["MLFLOW_TRACKING_URI"] + "2"}
    done = run_script(TRAINING, second)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _landed(second) == {"fit": ("FINISHED", list(range(20)))}
    client = MlflowClient(second["MLFLOW_TRACKING_URI"])
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert fresh_store.is_current(template)  # made again


def test_a_cache_that_cannot_be_written_leaves_the_store_to_mlflow(
    new_store: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    done = run_script(TRAINING, new_store)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _landed(new_store) == {"fit": ("FINISHED", list(range(20)))}


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_a_cache_disk_that_takes_nothing_leaves_the_store_to_mlflow_at_once(
    new_store: dict[str, str], small_disk: Callable[..., SmallDisk], trouble: str
) -> None:
    """The cache folder exists on a disk that is read-only or full: the template cannot
    be made, and MLflow makes the store, without the minute and a half of retries its
    engine would spend on a file it cannot create."""
    disk = small_disk()
    (disk.path / "mlhooks" / "mlflow-stores").mkdir(parents=True)
    if trouble == "read-only":
        disk.read_only()
    else:
        disk.fill()
    env = {**new_store, "XDG_CACHE_HOME": str(disk.path)}
    done = run_script(TRAINING, env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "engine could not be created" not in done.stderr
    assert _landed(env) == {"fit": ("FINISHED", list(range(20)))}
    assert not list((disk.path / "mlhooks" / "mlflow-stores").iterdir())


def test_processes_creating_one_new_store_at_once_share_it(
    new_store: dict[str, str], tmp_path: Path
) -> None:
    """Three tracked scripts start on the same new store at the same moment (no
    template yet): one store, one default experiment, every run once; MLflow alone
    then logs into it as into a store it made."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAINING))
    env = {**os.environ, **new_store}
    started = [
        subprocess.Popen([sys.executable, str(script), f"fit{i}"], env=env, cwd=tmp_path,
                         stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]  # fmt: skip
    for process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    assert wait_for_services(tmp_path / "mlhooks-runs", 120)
    plain = """
        import mlflow
        with mlflow.start_run(run_name="plain"):
            for step in range(20):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
    """
    assert run_script(plain, new_store, cwd=tmp_path).returncode == 0
    finished = ("FINISHED", list(range(20)))
    assert _landed(new_store) == {name: finished for name in ("fit0", "fit1", "fit2", "plain")}
    client = MlflowClient(new_store["MLFLOW_TRACKING_URI"])
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not [p.name for p in (tmp_path / "new").iterdir() if p.name != "mlflow.db"]
