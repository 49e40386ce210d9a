"""Full and read-only disks (issue 13, item 1 and repro 4): under the local store, the
spool and the staging area (``MLHOOKS_LOCAL_DIR``). Training always finishes with exit
code 0 and mlhooks warnings only (each once, no traceback); whatever can be stored is,
exactly once; no empty or partial file is left behind; ``mlhooks sync`` never crashes
on what a full disk left, and lands what was spooled once space is back.

Each case runs a real training script in a fresh interpreter against a small disk of
its own (:mod:`disks`: a 1 MB tmpfs as root, as on CI), with mlhooks as users run it
(not strict) and short retries."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from conftest import Store
from conftest import mlhooks_cli as cli
from disks import FILL, SmallDisk
from mlhooks import LocalStore
from mlhooks.delivery.spool import SpoolFile, find_spools
from mlhooks.testing import run_script
from mlhooks_mlflow.testing import stored_models

FAST = {
    "MLHOOKS_STRICT": "0",  # as users run it: our errors are warnings, never exceptions
    "MLHOOKS_RETRY_DELAYS": "0.05",
    "MLHOOKS_PROBE_INTERVAL": "0.2",
    # What can be stored is waited for (a loaded machine is slow); what cannot is not.
    "MLHOOKS_FLUSH_TIMEOUT": "120",
    "MLHOOKS_EXIT_TIMEOUT": "120",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # a server that is down fails at once
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
DISK_ERRORS = ("No space left on device", "Read-only file system", "Permission denied")

TRAINING = """
    import json, os
    from pathlib import Path
    import numpy as np
    from sklearn.linear_model import LinearRegression
    import mlhooks

    mlhooks.autolog()
    Path("notes.txt").write_text("kept with the run")
    Path("plots").mkdir(exist_ok=True)
    Path("plots/curve.txt").write_text("0.5 0.25")
    X = np.random.default_rng(0).normal(size=(20, 2))
    model = LinearRegression().fit(X, X @ [1.0, 2.0])  # a run of its own, autologged
    with mlhooks.start_run("manual") as run:
        mlhooks.log_params({"lr": 0.1})
        for step in range(50):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        mlhooks.log_artifact("notes.txt")
        mlhooks.log_artifacts("plots", "plots")
        mlhooks.log_model({"w": [1, 2]}, name="weights")
    print("trained", model.coef_.round(3).tolist())
"""


def disk_warnings(stderr: str, *also: str) -> list[str]:
    """The warnings of a script that met a bad disk: no traceback, only mlhooks'
    warnings, none twice, each about the disk, what it caused or ``also`` (words of
    the other fault of the case); returns them."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "Warning: " in line]
    assert all(": MlhooksWarning: mlhooks: " in line for line in lines), stderr
    messages = [line.split(": MlhooksWarning: ", 1)[1] for line in lines]
    assert len(messages) == len(set(messages)), stderr
    # What the disk caused: a run's end that waited for it, a journal that recovers.
    caused = ("ended before its data was stored", "is written again")
    for message in messages:
        assert any(words in message for words in DISK_ERRORS + caused + also), message
    return messages


def mlhooks_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return cli(*args, root=Path(env["MLHOOKS_LOCAL_DIR"]), env=env, timeout=300)


def work_dir(tmp_path: Path) -> Path:
    """Where the scripts run: only their own files may appear there."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return work


def assert_only_the_scripts_files(work: Path) -> None:
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "plots"]


# -- the local store ------------------------------------------------------------------------


def test_a_full_local_store_keeps_nothing_and_breaks_nothing(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """MLHOOKS_LOCAL_DIR (store, spool, staging) on a full disk: the training finishes
    (exit 0, warnings only), nothing partial or empty is left on the disk, nothing is
    written elsewhere; once space is back, ``mlhooks sync`` has nothing to replay."""
    disk = small_disk()
    disk.fill()
    root = disk.path / "runs"
    env = {**FAST, "MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)}
    work = work_dir(tmp_path)
    result = run_script(TRAINING, env=env, cwd=str(work))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("trained [1.0, 2.0]")
    warned = disk_warnings(result.stderr)
    assert any("cannot take a snapshot" in m or "cannot write to" in m for m in warned)
    assert disk.files() == {}
    assert_only_the_scripts_files(work)
    disk.free()
    synced = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert synced.returncode == 0, synced.stderr
    assert "nothing to sync" in synced.stdout and "Traceback" not in synced.stderr


def test_a_local_store_that_fills_and_frees_mid_run_stores_every_point_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """The disk fills after 25 points and frees after 1,000: what could not be written
    waits and is written once space is back; no point is stored twice, no line torn."""
    disk = small_disk()
    disk.need_full()
    root = disk.path / "runs"
    env = {**FAST, "MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)}
    result = run_script(
        FILL
        + f"""
import time
import mlhooks

DISK = {str(disk.path)!r}
with mlhooks.start_run("refilled") as run:
    mlhooks.log_param("lr", 0.1)
    for step in range(25):
        mlhooks.log_metric("loss", step, step=step)
    assert mlhooks.flush(120)
    fill_disk(DISK)
    for step in range(25, 1000):  # more than the free end of the file's last page
        mlhooks.log_metric("loss", step, step=step)
        if step % 50 == 0:
            time.sleep(0.05)  # the writer writes between: batches meet the full disk
    mlhooks.flush(10)  # neither stored nor spooled: held
    time.sleep(0.5)
    free_disk(DISK)
    for step in range(1000, 1025):
        mlhooks.log_metric("loss", step, step=step)
print(run.run_id)
""",
        env=env,
        cwd=str(work_dir(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert any("No space left on device" in m for m in disk_warnings(result.stderr))
    run = Store("local", env, root).run("refilled")
    assert run.status == "FINISHED" and run.params == {"lr": "0.1"}
    assert run.metrics["loss"] == [(step, float(step)) for step in range(1025)]
    (run_id,) = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    lines = (root / run_id / "metrics.tsv").read_text().splitlines()
    assert len(lines) == 1025 and all(line.count("\t") == 3 for line in lines)
    assert not [name for name in disk.files() if name.endswith(".tmp")]
    assert not find_spools(root / ".spool")


def test_a_read_only_local_store_is_left_as_it_was(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """A store on a read-only disk (holding an earlier run): the training finishes,
    the store is byte for byte as it was; ``mlhooks sync`` later has nothing to do."""
    disk = small_disk()
    root = disk.path / "runs"
    env = {**FAST, "MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)}
    work = work_dir(tmp_path)
    earlier = run_script(
        "import mlhooks\nwith mlhooks.start_run('earlier'):\n    mlhooks.log_metric('x', 1.0)\n",
        env=env,
        cwd=str(work),
    )
    assert earlier.returncode == 0, earlier.stderr
    before = disk.files()
    disk.read_only()
    result = run_script(TRAINING, env=env, cwd=str(work))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("trained [1.0, 2.0]")
    disk_warnings(result.stderr)
    assert disk.files() == before
    assert_only_the_scripts_files(work)
    disk.writable()
    synced = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert synced.returncode == 0, synced.stderr
    assert "nothing to sync" in synced.stdout
    assert [run.name for run in Store("local", env, root).all_runs()] == ["earlier"]


def test_what_a_full_store_could_not_take_is_spooled_elsewhere_and_synced_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """The store (``backend("local", root=...)``) on a full disk, its spool on a
    healthy one (MLHOOKS_LOCAL_DIR): everything is spooled; once space is back,
    ``mlhooks sync`` stores each point and the artifact once, the snapshots it stored
    go, and a second sync has nothing to do."""
    disk = small_disk()
    disk.fill()
    store_root, spool_root = disk.path / "store", tmp_path / "spool-here"
    env = {**FAST, "MLHOOKS_LOCAL_DIR": str(spool_root)}
    result = run_script(
        f"""
        import mlhooks
        from pathlib import Path
        store = mlhooks.backend("local", root={str(store_root)!r})
        Path("notes.txt").write_text("kept with the run")
        with mlhooks.start_run("spooled", backends=[store]):
            mlhooks.log_param("lr", 0.1)
            for step in range(100):
                mlhooks.log_metric("loss", step, step=step)
            mlhooks.log_artifact("notes.txt")
        Path("notes.txt").unlink()  # the snapshot in the staging folder stays for sync
        """,
        env=env,
        cwd=str(work_dir(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    disk_warnings(result.stderr)
    assert disk.files() == {}
    assert find_spools(spool_root / ".spool")
    disk.free()
    synced = mlhooks_cli("sync", "--dir", str(spool_root), env=env)
    assert synced.returncode == 0, synced.stderr
    run = Store("local", env, store_root).run("spooled")
    assert run.status == "FINISHED" and run.params == {"lr": "0.1"}
    assert run.metrics["loss"] == [(step, float(step)) for step in range(100)]
    (run_id,) = LocalStore(store_root).run_ids()
    assert (store_root / run_id / "artifacts" / "notes.txt").read_text() == "kept with the run"
    assert not (spool_root / ".staging").exists()
    again = mlhooks_cli("sync", "--dir", str(spool_root), env=env)
    assert again.returncode == 0 and "nothing to sync" in again.stdout
    assert Store("local", env, store_root).run("spooled").metrics == run.metrics


def test_a_store_back_while_its_spool_disk_is_full_gets_each_point_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """Repro 4's duplicates: the store is read-only, so 40 points are spooled; the
    spool's disk fills, then the store turns writable again. A replay records its
    progress in the space its cursor already holds, and one that cannot (no cursor yet
    on a full disk) stores nothing, rather than the same points at every probe: once
    space is back, each point is stored once."""
    store_disk, spool_disk = small_disk("store"), small_disk("spool")
    spool_disk.need_full()
    store_root, spool_root = store_disk.path / "store", spool_disk.path / "runs"
    store_root.mkdir()
    store_disk.read_only()
    env = {**FAST, "MLHOOKS_LOCAL_DIR": str(spool_root)}
    result = run_script(
        FILL
        + f"""
import subprocess, time
import mlhooks

STORE = {str(store_root)!r}
store = mlhooks.backend("local", root=STORE)
with mlhooks.start_run("replayed", backends=[store]) as run:
    for step in range(40):
        mlhooks.log_metric("loss", step, step=step)
    assert mlhooks.flush(120)  # spooled: the store is read-only
    fill_disk({str(spool_disk.path)!r})
    subprocess.run(["mount", "-o", "remount,rw", {str(store_disk.path)!r}], check=True)
    time.sleep(2)  # probes at 0.2, 0.6, 1.4 s, on a full disk
    free_disk({str(spool_disk.path)!r})
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(STORE, run.run_id, "meta.json")):
        assert time.monotonic() < deadline, "the spool was not replayed"
        time.sleep(0.1)  # the next probe replays it
""",
        env=env,
        cwd=str(work_dir(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    disk_warnings(result.stderr)
    run = Store("local", env, store_root).run("replayed")
    assert run.metrics["loss"] == [(step, float(step)) for step in range(40)]
    assert run.status == "FINISHED"
    assert not find_spools(spool_root / ".spool")


# -- MLflow, with the spool and staging on a bad disk ------------------------------------------


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_mlflow_gets_everything_when_the_local_dir_is_unwritable(
    small_disk: Callable[..., SmallDisk],
    tmp_path: Path,
    mlflow_tracking_uri: str,
    fault: str,
) -> None:
    """MLflow is up, MLHOOKS_LOCAL_DIR (staging and spool) is full or read-only:
    ``log_artifact`` raises nothing into the script and every artifact, model, param
    and point lands in MLflow; nothing is written to the bad disk."""
    disk = small_disk()
    root = disk.path / "runs"
    if fault == "full":
        disk.fill()
    else:
        disk.read_only()
    env = {
        **FAST,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
    }
    work = work_dir(tmp_path)
    result = run_script(TRAINING, env=env, cwd=str(work))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("trained [1.0, 2.0]")
    assert "OSError" not in result.stderr, result.stderr
    warned = disk_warnings(result.stderr)
    assert len([m for m in warned if "cannot write to" in m]) == 1
    client = MlflowClient(mlflow_tracking_uri)
    runs = {run.info.run_name: run for run in client.search_runs(["0"])}
    assert sorted(runs) == ["LinearRegression", "manual"]
    manual, fit = runs["manual"], runs["LinearRegression"]
    assert manual.info.status == "FINISHED" and manual.data.params == {"lr": "0.1"}
    history = client.get_metric_history(manual.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(50))
    stored = _artifacts(client, manual.info.run_id)
    assert {"notes.txt", "plots/curve.txt"} <= stored
    assert any(name.startswith("weights/") for name in stored)  # the model
    assert fit.info.status == "FINISHED" and fit.data.params["fit_intercept"] == "True"
    assert any(name.startswith("model/") for name in _artifacts(client, fit.info.run_id))
    assert disk.files() == {}
    assert_only_the_scripts_files(work)


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
    if path is None:  # with MLflow 3, the run's models are logged models of their own
        for name, uri in stored_models(client, run_id).items():
            if uri.startswith("models:/"):
                files = client.list_logged_model_artifacts(uri.removeprefix("models:/"))
                found |= {f"{name}/{entry.path}" for entry in files}
    return found


def test_a_spool_that_fills_while_mlflow_is_down_is_synced_once(
    small_disk: Callable[..., SmallDisk], tmp_path: Path, new_mlflow_server: Callable[[], Any]
) -> None:
    """The server is down and the spool's disk full (no spool can be opened), freed,
    full again (the open spool cannot grow), freed: no spool file is left empty (none
    per round or probe), every point is in the spools exactly once, ``mlhooks sync``
    fails cleanly while the server is down and, once it is up, stores every point once."""
    server = new_mlflow_server()
    disk = small_disk()
    disk.need_full()
    root = disk.path / "runs"
    spools = root / ".spool"
    env = {
        **FAST,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLFLOW_TRACKING_URI": server.uri,
    }
    result = run_script(
        FILL
        + f"""
import json, time
import mlhooks

DISK, SPOOLS = {str(disk.path)!r}, {str(spools)!r}
listings = []

def log(steps):
    for step in steps:
        mlhooks.log_metric("loss", step, step=step)
        if step % 10 == 0:
            time.sleep(0.05)  # the writer goes round: every round may open a spool

def spool_files():
    found = os.listdir(SPOOLS) if os.path.isdir(SPOOLS) else []
    return sorted(name for name in found if name.endswith(".spool.jsonl"))

with mlhooks.start_run("outage") as run:
    fill_disk(DISK)  # full before the first spool
    log(range(25))
    mlhooks.flush(5)
    time.sleep(1)
    listings.append(spool_files())
    free_disk(DISK)
    log(range(25, 50))
    assert mlhooks.flush(120)  # spooled
    listings.append(spool_files())
    fill_disk(DISK)  # full while a spool is open
    log(range(50, 550))  # more than the free end of the spool's last page
    mlhooks.flush(5)
    time.sleep(1)
    listings.append(spool_files())
    free_disk(DISK)
    log(range(550, 575))
print(json.dumps(listings))
""",
        env=env,
        cwd=str(work_dir(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    warned = disk_warnings(
        result.stderr, "Connection refused", "unreachable since", "were not stored before exit"
    )
    assert any("No space left on device" in m for m in warned)
    full, spooled, full_again = json.loads(result.stdout.splitlines()[-1])
    assert full == []  # no spool could be written: none was left empty
    assert len(spooled) == 1 and full_again == spooled
    files = [p for p in spools.glob("*") if p.is_file()]
    assert files and all(p.stat().st_size > 0 for p in files)
    assert sorted(_spooled_steps(find_spools(spools))) == list(range(575))

    down = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert down.returncode == 1 and "FAILED" in down.stderr
    assert "Traceback" not in down.stderr
    server.start()
    synced = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert synced.returncode == 0, synced.stderr
    assert not find_spools(spools)
    client = MlflowClient(server.uri)
    (run,) = client.search_runs(["0"])
    assert run.info.run_name == "outage" and run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(575))


def _spooled_steps(spools: list[SpoolFile]) -> list[int]:
    from mlhooks.plugin import LogBatch

    return [
        step
        for spool in spools
        for _, op in spool.pending()
        if isinstance(op, LogBatch)
        for _, _, step, _ in op.metrics
    ]


def test_sync_on_a_full_disk_stores_nothing_twice(
    small_disk: Callable[..., SmallDisk], tmp_path: Path
) -> None:
    """``mlhooks sync`` run while the spool's disk is full, on a spool never replayed
    (no probe ran: no cursor yet), cannot record its progress: it stores nothing, says
    so and exits 1; once space is back it stores each point once."""
    disk = small_disk()
    disk.need_full()
    root = disk.path / "runs"
    env = {**FAST, "MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_PROBE_INTERVAL": "3600"}
    store = small_disk("store")  # read-only while the script runs
    store_at = store.path / "store"
    store_at.mkdir()
    store.read_only()
    result = run_script(
        f"""
        import mlhooks
        store = mlhooks.backend("local", root={str(store_at)!r})
        with mlhooks.start_run("later", backends=[store]):
            for step in range(30):
                mlhooks.log_metric("loss", step, step=step)
        """,
        env=env,
        cwd=str(work_dir(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert find_spools(root / ".spool")
    store.writable()
    disk.fill()
    full = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert full.returncode == 1 and "No space left on device" in full.stderr
    assert "Traceback" not in full.stderr
    assert not list(store_at.iterdir())  # nothing stored: nothing can be stored twice
    disk.free()
    synced = mlhooks_cli("sync", "--dir", str(root), env=env)
    assert synced.returncode == 0, synced.stderr
    run = Store("local", env, store_at).run("later")
    assert run.metrics["loss"] == [(step, float(step)) for step in range(30)]
