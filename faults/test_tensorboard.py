"""The TensorBoard column of the fault matrix (issue 13, item 1): the bad input of
test_bad_input.py, processes killed mid-run (test_journal.py) and full or read-only
disks under the event files, each in a real script, read back with TensorBoard's own
reader (``EventAccumulator``, through ``mlhooks_tensorboard.reading``).

TensorBoard keeps scalars as 32-bit floats (NaN and infinities included: unlike
MLflow's SQL stores, it keeps infinities as such), steps as 64-bit integers, wall times
in seconds, params in the HParams dashboard (numbers as numbers), tags as text. Every
accepted value is read back as exactly that; nothing is written outside the root."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_bad_input import ACCEPTED, REFUSED
from test_journal import HOW, KILL_MID_FIT, SETTLE
from test_storage import FAST, disk_warnings

from conftest import SERVICE, finish_dead_journals, mlhooks_cli
from disks import FILL, SmallDisk
from mlhooks.testing import run_script
from mlhooks_tensorboard import reading

as_stored = reading.as_stored


@pytest.fixture
def tb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a script writing to TensorBoard only, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)  # the scripts write their files here
    return {
        "MLHOOKS_BACKENDS": "tensorboard",
        "MLHOOKS_TENSORBOARD_DIR": str(tmp_path / "tb-runs"),
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "mlhooks-runs"),
    }


def only_run(root: Path) -> Any:
    """The events of the one run under ``root``, read by TensorBoard."""
    (folder,) = reading.run_dirs(root)
    return reading.load(root / folder)


def points(accumulator: Any) -> dict[str, list[tuple[int, float]]]:
    return {
        tag: [(step, value) for step, value, _ in series]
        for tag, series in reading.scalars(accumulator).items()
    }


# -- bad input --------------------------------------------------------------------------------


def test_a_users_bad_call_is_refused_and_every_accepted_value_is_stored(
    tb: dict[str, str], tmp_path: Path
) -> None:
    """The calls test_bad_input.py refuses are refused with TensorBoard too; every edge
    value that passed is in the event files as TensorBoard holds it."""
    calls = json.dumps(list(REFUSED))
    result = run_script(
        f"""
        import json, math, os
        import mlhooks

        FILE = "artifact.txt"
        open(FILE, "w").write("data")
        errors = {{}}
        with mlhooks.start_run("edges"):
            for call in json.loads({calls!r}):
                try:
                    exec(call)
                except ValueError as error:
                    errors[call] = str(error)
            {textwrap.indent(textwrap.dedent(ACCEPTED).strip(), " " * 12).lstrip()}
        print(json.dumps(errors))
        """,
        env={**tb, "MLHOOKS_STRICT": "1"},
    )
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout.splitlines()[-1])
    assert sorted(errors) == sorted(REFUSED)
    run = only_run(tmp_path / "tb-runs")
    stored = {tag: series[-1] for tag, series in reading.scalars(run).items()}
    assert math.isnan(stored["nan"][1]) and stored["inf"][1] == math.inf
    assert stored["minus_inf"][1] == -math.inf
    assert stored["numpy"][:2] == (3, 0.5) and stored["torch"][:2] == (4, 0.25)
    assert stored["zero_d"][:2] == (5, 0.75)
    assert stored["last_step"][:2] == (2**63 - 1, 1.0)
    assert stored["first_time"] == (0, 1.0, 0.0)  # timestamp 0: wall time 0 s
    assert stored["température moyenne"][1] == 20.5
    assert stored["val/loss: epoch-end"][1] == as_stored(0.1)  # a 32-bit float
    assert stored["k" * 250][1] == 1.0 and "loss" not in stored
    params = reading.hparams(run)
    assert params["p" * 250] == "v" * 6000
    assert {key: params[key] for key in params if key.startswith("param_")} == {
        f"param_{i}": float(i) for i in range(10_000)
    }
    assert "big" not in params and "../etc" not in params
    assert reading.texts(run)["tags/note"] == ["t" * 8000]
    assert reading.session_end(run)[0] == "STATUS_SUCCESS"  # type: ignore[index]
    _assert_nothing_outside(tmp_path)


def test_autologging_sanitizes_bad_input_for_tensorboard_with_one_warning_each(
    tb: dict[str, str], tmp_path: Path
) -> None:
    result = run_script(
        """
        import warnings
        import mlhooks
        from mlhooks.plugin import FitSession

        open("artifact.txt", "w").write("data")
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            session = FitSession("fw", "sanitized", params={"": 1, "a//b": 2, "big": "x" * 7000})
            session.start()
            session.log_metrics({"loss 🙂": 1.0, "/abs": 2.0, "text": "high"}, step=2**70)
            session.log_metrics({"late": 3.0}, step=1, timestamp=-5)
            session.log_artifact("artifact.txt", "../../../../X")
            session.log_artifact("artifact.txt", "/srv/elsewhere/Y")
            session.log_artifact("missing.txt")
            session.end()
        print(len([w for w in caught if "mlhooks" in str(w.message)]))
        """,
        env={**tb, "MLHOOKS_STRICT": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == 11  # as with the local store and MLflow
    run = only_run(tmp_path / "tb-runs")
    assert reading.hparams(run) == {"_": 1.0, "a/b": 2.0, "big": "x" * 6000}
    assert points(run) == {
        "loss _": [(2**63 - 1, 1.0)],
        "abs": [(2**63 - 1, 2.0)],
        "late": [(1, 3.0)],
    }
    assert reading.session_end(run)[0] == "STATUS_SUCCESS"  # type: ignore[index]
    _assert_nothing_outside(tmp_path)


NAMES = ["../../escape", "/abs/name", "a/b", "..", "~/home", "C:\\\\evil", "é 🙂"]


def test_run_names_never_leave_the_root(tb: dict[str, str], tmp_path: Path) -> None:
    """Run names with ``../``, absolute names and odd characters, top-level and nested:
    every run is a folder under the root, TensorBoard lists each, nothing is outside."""
    result = run_script(
        f"""
        import mlhooks
        for name in {NAMES!r}:
            with mlhooks.start_run(name):
                mlhooks.log_metric("x", 1.0)
                with mlhooks.start_run("../" + name, nested=True):
                    mlhooks.log_metric("y", 2.0)
        """,
        env={**tb, "MLHOOKS_STRICT": "1"},
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "tb-runs"
    folders = reading.run_dirs(root)
    assert len(folders) == 2 * len(NAMES)
    assert len([f for f in folders if "/" in f]) == len(NAMES)  # the nested ones
    for folder in folders:
        assert (root / folder).resolve().is_relative_to(root.resolve())
        assert set(reading.scalars(root / folder)) in ({"x"}, {"y"})
    _assert_nothing_outside(tmp_path, "escape", "name", "evil")


def test_names_from_a_spool_never_leave_the_root(tmp_path: Path) -> None:
    """A spool (written by another process, or by hand) holds run ids and names with
    ``../``: ``mlhooks sync`` stores the run under the root all the same."""
    from mlhooks import RunInfo
    from mlhooks.delivery.spool import SpoolWriter
    from mlhooks.plugin import EndRun, LogBatch, StartRun
    from mlhooks_tensorboard import TensorBoardBackend

    root, local = tmp_path / "tb-runs", tmp_path / "mlhooks-runs"
    writer = SpoolWriter(local / ".spool", TensorBoardBackend(root))
    info = RunInfo(run_id="../../../spooled", name="../../../spooled", start_time=1000)
    writer.append(
        [
            StartRun(info),
            LogBatch(info.run_id, [("loss", 0.5, 3, 2000)], {"lr": "0.1"}, {}),
            EndRun(info.run_id, "FINISHED", 3000),
        ]
    )
    writer.close()
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--force", "--dir", str(local)],
        capture_output=True,
        text=True,
        env={**os.environ, "MLHOOKS_LOCAL_DIR": str(local)},
    )
    assert synced.returncode == 0, synced.stderr
    (folder,) = reading.run_dirs(root)
    assert "/" not in folder and (root / folder).resolve().parent == root.resolve()
    run = reading.load(root / folder)
    assert reading.scalars(run) == {"loss": [(3, 0.5, 2.0)]}
    assert reading.hparams(run) == {"lr": 0.1}
    _assert_nothing_outside(tmp_path, "spooled")


def _assert_nothing_outside(tmp_path: Path, *names: str) -> None:
    """No file or folder named X, Y (or ``names``) where ``../`` from the test's folder
    (where the scripts run), from the root, or an absolute path would have put it."""
    for folder in (tmp_path, tmp_path.parent, tmp_path.parent.parent, Path("/")):
        for entry in folder.iterdir():
            assert not entry.name.startswith(("X", "Y", *names)), f"{entry} escaped the store"
    assert not Path("/srv/elsewhere").exists() and not Path("/abs").exists()


# -- killed processes and the journal ---------------------------------------------------------


def journals(tb: dict[str, str]) -> list[Path]:
    return sorted((Path(tb["MLHOOKS_LOCAL_DIR"]) / ".journal").glob("*.journal"))


def test_sigkill_in_a_fit_loses_at_most_the_last_interval(
    tb: dict[str, str], tmp_path: Path
) -> None:
    """XGBoost is SIGKILLed at round 70, 1.5 s after round 60 (test_journal.py's case):
    after ``mlhooks sync`` TensorBoard holds every round up to 60 once, the params in
    the HParams dashboard, one session, ended as a failure (KILLED)."""
    result = run_script(KILL_MID_FIT.format(how=HOW["SIGKILL"]), env=tb)
    assert result.returncode == -9, result.stderr
    finish_dead_journals(Path(tb["MLHOOKS_LOCAL_DIR"]), tb)
    assert not journals(tb)
    (folder,) = reading.run_dirs(tmp_path / "tb-runs")
    run = reading.load(tmp_path / "tb-runs" / folder)
    (key,) = [tag for tag in reading.scalars(run) if tag.startswith("train")]
    steps = [step for step, _ in points(run)[key]]
    assert len(steps) == len(set(steps)), "a round stored twice"
    assert set(range(61)) <= set(steps)
    assert reading.hparams(run)["max_depth"] == 2.0
    assert len(reading.session_starts(tmp_path / "tb-runs" / folder)) == 1
    assert reading.session_ends(tmp_path / "tb-runs" / folder)[0][0] == "STATUS_FAILURE"
    rows = reading.hparams_dashboard(tmp_path / "tb-runs")
    assert rows[folder].status == "STATUS_FAILURE" and rows[folder].hparams["eta"] == 0.1


def test_params_stored_before_a_kill_are_in_the_recovered_runs_hparams(
    tb: dict[str, str], tmp_path: Path
) -> None:
    """The writer stored the run's start and params, then the process was SIGKILLed
    with 1,000 points in its journal: the next process that tracks delivers them, and
    ends the run with its params in the HParams row (which TensorBoard gets only at a
    run's end) and one session."""
    first = run_script(
        f"""
        import os, signal, time
        import mlhooks

        mlhooks.start_run("killed")
        mlhooks.log_params({{"lr": 0.1, "epochs": 3}})
        mlhooks.flush()  # stored by the writer: only the journal's cursor remembers them
        for step in range(1000):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        time.sleep({SETTLE})
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        env=tb,
    )
    assert first.returncode == -9, first.stderr
    if SERVICE:  # the dead process's service finished its journal; the next run is alone
        finish_dead_journals(Path(tb["MLHOOKS_LOCAL_DIR"]), tb)
    second = run_script(
        f"""
        import time
        import mlhooks
        from mlhooks.delivery import recovery

        with mlhooks.start_run("next"):
            mlhooks.log_metric("acc", 0.9)
            deadline = time.monotonic() + {0 if SERVICE else 120}
            while not recovery.told and time.monotonic() < deadline:
                time.sleep(0.1)  # the dead process's journal is delivered in the background
        """,
        env={**tb, "MLHOOKS_STRICT": "0"},
    )
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("ended without its exit sequence") == (0 if SERVICE else 1)
    assert not journals(tb)
    root = tmp_path / "tb-runs"
    folders = {name.rsplit("-", 1)[0]: root / name for name in reading.run_dirs(root)}
    killed = reading.load(folders["killed"])
    assert [step for step, _ in points(killed)["loss"]] == list(range(1000))
    assert reading.hparams(killed) == {"lr": 0.1, "epochs": 3.0}
    assert len(reading.session_starts(folders["killed"])) == 1
    assert [status for status, _ in reading.session_ends(folders["killed"])] == ["STATUS_FAILURE"]
    assert reading.session_end(folders["next"])[0] == "STATUS_SUCCESS"  # type: ignore[index]


# -- full and read-only disks -----------------------------------------------------------------

TRAINING = """
    import mlhooks
    with mlhooks.start_run("tb-run", tags={"team": "vision"}) as run:
        mlhooks.log_params({"lr": 0.1, "epochs": 3})
        for step in range(STEPS):
            mlhooks.log_metric("loss", step, step=step)
    print(run.run_id)
"""


def tb_on(disk: SmallDisk, tmp_path: Path) -> dict[str, str]:
    """TensorBoard's root on ``disk``, the spool on a healthy one."""
    return {
        **FAST,
        "MLHOOKS_BACKENDS": "tensorboard",
        "MLHOOKS_TENSORBOARD_DIR": str(disk.path / "tb-runs"),
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "mlhooks-runs"),
    }


def sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return mlhooks_cli("sync", root=Path(env["MLHOOKS_LOCAL_DIR"]), env=env, timeout=300)


def assert_stored_once(root: Path, steps: int) -> None:
    """The run under ``root`` holds each of ``steps`` points once, its params, tags
    and end, as TensorBoard reads them."""
    run = only_run(root)
    assert points(run) == {"loss": [(step, float(step)) for step in range(steps)]}
    assert reading.hparams(run) == {"lr": 0.1, "epochs": 3.0}
    assert reading.texts(run)["tags/team"] == ["vision"]
    assert reading.session_end(run)[0] == "STATUS_SUCCESS"  # type: ignore[index]


def test_a_full_tensorboard_disk_spools_everything_and_sync_stores_it_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """The event files' disk is full from the start: the training ends 0, no empty
    event file is left per retry, everything is spooled; once space is back,
    ``mlhooks sync`` stores every point once."""
    disk = small_disk()
    disk.fill()
    env = tb_on(disk, tmp_path)
    result = run_script(TRAINING.replace("STEPS", "500"), env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    disk_warnings(result.stderr)
    assert not [name for name in disk.files() if "tfevents" in name]
    disk.free()
    synced = sync(env)
    assert synced.returncode == 0, synced.stderr
    assert_stored_once(disk.path / "tb-runs", 500)


def test_a_tensorboard_disk_that_fills_and_frees_mid_run_stores_every_point_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """The disk fills in the middle of 2,000 points and frees before the end: batches
    cut short by the full disk are taken back and written again whole, so TensorBoard
    reads every point once (what is spooled meanwhile is replayed by the process)."""
    disk = small_disk()
    disk.need_full()
    env = tb_on(disk, tmp_path)
    result = run_script(
        FILL
        + f"""
import time
import mlhooks

SPOOLS = {str(tmp_path / "mlhooks-runs" / ".spool")!r}


def spools():
    found = os.listdir(SPOOLS) if os.path.isdir(SPOOLS) else []
    return [name for name in found if name.endswith(".spool.jsonl")]


with mlhooks.start_run("tb-run", tags={{"team": "vision"}}) as run:
    mlhooks.log_params({{"lr": 0.1, "epochs": 3}})
    for step in range(25):
        mlhooks.log_metric("loss", step, step=step)
    assert mlhooks.flush(120)
    fill_disk({str(disk.path)!r})
    for step in range(25, 2000):
        mlhooks.log_metric("loss", step, step=step)
        if step % 50 == 0:
            time.sleep(0.05)  # the writer writes between: batches meet the full disk
    mlhooks.flush(120)
    free_disk({str(disk.path)!r})
    for step in range(2000, 2025):
        mlhooks.log_metric("loss", step, step=step)
    assert mlhooks.flush(60)
    deadline = time.monotonic() + 90
    while spools() and time.monotonic() < deadline:
        time.sleep(0.1)  # the writer replays its spool
    assert not spools(), "the spool was not replayed"
""",
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert any("No space left on device" in m for m in disk_warnings(result.stderr))
    assert_stored_once(disk.path / "tb-runs", 2025)
    events = [name for name in disk.files() if "tfevents" in name]
    assert events and all(disk.files()[name] for name in events)  # none left empty


def test_a_read_only_tensorboard_disk_is_left_as_it_was_and_synced_later(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    disk = small_disk()
    env = tb_on(disk, tmp_path)
    (disk.path / "tb-runs").mkdir()
    earlier = run_script(
        "import mlhooks\nwith mlhooks.start_run('earlier'):\n    mlhooks.log_metric('x', 1.0)\n",
        env=env,
        cwd=str(tmp_path),
    )
    assert earlier.returncode == 0, earlier.stderr
    before = disk.files()
    disk.read_only()
    result = run_script(TRAINING.replace("STEPS", "100"), env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    disk_warnings(result.stderr)
    assert disk.files() == before
    run_id = result.stdout.split()[-1]
    disk.writable()
    synced = sync(env)
    assert synced.returncode == 0, synced.stderr
    run = reading.load(reading.find_run_dir(disk.path / "tb-runs", run_id))
    assert points(run) == {"loss": [(step, float(step)) for step in range(100)]}
    assert reading.hparams(run) == {"lr": 0.1, "epochs": 3.0}


def test_mlflow_is_not_held_up_by_a_full_tensorboard_disk(
    small_disk: Callable[..., SmallDisk], tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """Two backends, TensorBoard's disk full: MLflow stores everything at once,
    TensorBoard gets it from ``mlhooks sync`` once space is back."""
    from mlflow.tracking import MlflowClient

    disk = small_disk()
    disk.fill()
    env = {
        **tb_on(disk, tmp_path),
        "MLHOOKS_BACKENDS": "mlflow,tensorboard",
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
    }
    result = run_script(TRAINING.replace("STEPS", "300"), env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    disk_warnings(result.stderr)
    client = MlflowClient(mlflow_tracking_uri)
    (stored,) = client.search_runs(["0"])
    assert stored.info.status == "FINISHED" and stored.data.params == {"lr": "0.1", "epochs": "3"}
    steps = [m.step for m in client.get_metric_history(stored.info.run_id, "loss")]
    assert sorted(steps) == list(range(300))
    disk.free()
    synced = sync(env)
    assert synced.returncode == 0, synced.stderr
    assert_stored_once(disk.path / "tb-runs", 300)
