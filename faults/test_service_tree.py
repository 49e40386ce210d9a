"""The writer service of a process tree (issue 14): a training process and the child it
forked share one service (``MLHOOKS_SERVICE=1`` in every case, whatever the session's
mode), and the faults of a service hit both at once: the service killed mid-run, a
request that hangs while both exit, the local dir filling up under both. Each case
runs a real script that forks a real child, into a real MLflow store, and reads back
what landed: every point once, runs ended honestly, neither process waiting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from conftest import mlhooks_cli, wait_for_services
from disks import FILL, SmallDisk
from mlhooks.testing import wait_until
from mlhooks_mlflow.testing import MlflowServer

SLOW = 300.0


def _env(root: Path, uri: str, **extra: str) -> dict[str, str]:
    return {
        "MLHOOKS_SERVICE": "1",
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLFLOW_TRACKING_URI": uri,
        "MLHOOKS_STRICT": "0",  # as users run it: the deaths are warnings
        **extra,
    }


def _script(tmp_path: Path, code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    import os

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _runs(uri: str) -> dict[str, Any]:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {run.info.run_name: run for run in client.search_runs(experiments)}


def _steps(uri: str, run: Any, key: str = "loss") -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, key))


KILLED = """
    import os, sys, time
    from pathlib import Path

    import mlhooks
    from mlhooks.delivery.service_client import client

    FOLDER = Path(sys.argv[1])


    def log(name, kill):
        with mlhooks.start_run(name):
            for step in range(6000):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
                if step == 100:
                    assert mlhooks.flush(120)
                    print(name, "first served by", client.describe()["pid"], flush=True)
                if kill and step in (2000, 4000):
                    assert mlhooks.flush(120)
                    time.sleep(0.3)
                    print("killed service", client.kill_for_tests(), flush=True)
                if step % 500 == 0:
                    time.sleep(0.6)  # the journal thread writes what came
        print(name, "attached", client.describe()["attached"], flush=True)


    with mlhooks.start_run("setup"):
        mlhooks.log_metric("x", 1.0)
        assert mlhooks.flush(120)  # the parent's service runs
    pid = os.fork()
    if pid == 0:
        try:
            log("child", kill=False)
        finally:
            os._exit(0)
    log("parent", kill=True)
    os.waitpid(pid, 0)
"""


def test_a_shared_service_killed_mid_run_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """The service of a parent and its attached child is SIGKILLed twice while both log
    6,000 points: each process warns, a new service goes on from each journal's cursor,
    and both runs are FINISHED with every point once."""
    root = tmp_path / "mlhooks-runs"
    process = _script(tmp_path, KILLED, _env(root, mlflow_tracking_uri))
    out, err = process.communicate(timeout=SLOW)
    assert process.returncode == 0, err
    assert out.count("killed service") == 2, out + err
    served = {line.split()[0]: line.split()[-1] for line in out.splitlines() if "first" in line}
    assert served["child"] == served["parent"], out  # one service for both
    assert "Traceback" not in err, err
    assert err.count("ended unexpectedly") >= 2, err  # the parent told, at each death
    wait_for_services(root)
    runs = _runs(mlflow_tracking_uri)
    for name in ("parent", "child"):
        assert runs[name].info.status == "FINISHED", name
        assert _steps(mlflow_tracking_uri, runs[name]) == list(range(6000)), name
    assert not list(root.glob(".journal/*.journal"))
    assert mlhooks_cli("sync", root=root, env=_env(root, mlflow_tracking_uri)).stdout.startswith(
        "nothing to sync"
    )


HUNG = """
    import os, sys, time
    from pathlib import Path

    import mlhooks
    from mlhooks.delivery.service_client import client

    FOLDER = Path(sys.argv[1])


    def wait_for(name):
        while not (FOLDER / name).exists():
            time.sleep(0.05)


    def log(name, ready):
        with mlhooks.start_run(name):
            mlhooks.log_params({"lr": 0.1, "depth": 3})
            for step in range(200):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
            assert mlhooks.flush(120)  # stored: the service serves this process
            print(name, "attached", client.describe()["attached"], flush=True)
            (FOLDER / ready).touch()
            wait_for("paused")
            for step in range(200, 1200):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        print(name, "ended", flush=True)


    pid = os.fork()
    if pid == 0:
        try:
            wait_for("parent-ready")
            log("child", "child-ready")
        finally:
            os._exit(0)
    log("parent", "parent-ready")
    os.waitpid(pid, 0)
    print("done", flush=True)
"""


def test_a_parent_and_its_child_exit_at_once_while_their_services_request_hangs(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """The server is SIGSTOPped once a parent and its attached child stored their
    first points; both log 1,000 more, end their runs and exit while the server is
    still stopped: neither waits for it (their flush and exit timeouts are an hour,
    far past what this test waits for anything), and the service, still inside the
    hung request, spools what it holds and lets go of the journals while the server
    is stopped too. After SIGCONT, `mlhooks sync` stores everything, each point once
    (the request that hung may land too), and both runs are FINISHED."""
    server = new_mlflow_server()
    server.start()
    root = tmp_path / "mlhooks-runs"
    env = _env(root, server.uri, MLHOOKS_FLUSH_TIMEOUT="3600", MLHOOKS_EXIT_TIMEOUT="3600")
    process = _script(tmp_path, HUNG, env)
    try:
        wait_until(lambda: (tmp_path / "child-ready").exists(), timeout=SLOW)
        server.pause()
        (tmp_path / "paused").touch()
        out, err = process.communicate(timeout=SLOW)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert server.paused  # both ended their runs and exited while it answered nothing
    assert "child attached True" in out and "parent attached False" in out, out
    assert "parent ended" in out and "child ended" in out and "done" in out, out
    wait_for_services(root)  # the service let go of both journals...
    assert server.paused  # ...while the request still hangs: it spooled, did not wait
    assert list(root.glob(".spool/*.spool.jsonl")), "what was not stored is in a spool"
    server.resume()
    sync_env = {**env, "MLHOOKS_STRICT": "0"}
    for _ in range(2):
        synced = mlhooks_cli("sync", root=root, env=sync_env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
    runs = _runs(server.uri)
    for name in ("parent", "child"):
        assert runs[name].info.status == "FINISHED", name
        assert runs[name].data.params == {"lr": "0.1", "depth": "3"}
        assert _steps(server.uri, runs[name]) == list(range(1200)), name


FULL = """
    import os, sys, time
    from pathlib import Path

    import mlhooks
    from mlhooks.delivery.service_client import client

    FOLDER = Path(sys.argv[1])


    def wait_for(name):
        while not (FOLDER / name).exists():
            time.sleep(0.05)


    def log(name, ready):
        with mlhooks.start_run(name):
            for step in range(100):
                mlhooks.log_metric("loss", step, step=step)
            assert mlhooks.flush(120)  # journaled and stored by the service
            print(name, "attached", client.describe()["attached"], flush=True)
            (FOLDER / ready).touch()
            wait_for("full")
            for step in range(100, 1100):
                mlhooks.log_metric("loss", step, step=step)
                if step % 100 == 0:
                    time.sleep(0.1)  # the journal thread meets the full disk
        print(name, "done", flush=True)


    pid = os.fork()
    if pid == 0:
        try:
            wait_for("parent-ready")
            log("child", "child-ready")
        finally:
            os._exit(0)
    log("parent", "parent-ready")
    os.waitpid(pid, 0)
"""


def test_a_local_dir_that_fills_under_a_parent_and_its_child_loses_nothing(
    tmp_path: Path, small_disk: Callable[..., SmallDisk], mlflow_tracking_uri: str
) -> None:
    """The local dir (journals) fills up after a parent and its attached child stored
    their first points: each process's lane leaves the service once it stored what
    the journal holds, and the process delivers the rest itself; both runs FINISHED,
    every point once, warnings about the disk only."""
    disk = small_disk()
    disk.need_full()
    root = disk.path / "runs"
    env = _env(
        root,
        mlflow_tracking_uri,
        MLHOOKS_RETRY_DELAYS="0.05",
        MLHOOKS_FLUSH_TIMEOUT="120",
        MLHOOKS_EXIT_TIMEOUT="120",
    )
    process = _script(tmp_path, FULL, env)
    try:
        wait_until(lambda: (tmp_path / "child-ready").exists(), timeout=SLOW)
        fill = FILL + f"\nfill_disk({str(disk.path)!r})\n"
        subprocess.run([sys.executable, "-c", fill], check=True, timeout=SLOW)
        (tmp_path / "full").touch()
        out, err = process.communicate(timeout=SLOW)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "parent done" in out and "child done" in out, out + err
    assert "child attached True" in out and "parent attached False" in out, out
    assert "Traceback" not in err, err
    warned = [line for line in err.splitlines() if "MlhooksWarning" in line]
    assert any("No space left on device" in line for line in warned), err
    runs = _runs(mlflow_tracking_uri)
    for name in ("parent", "child"):
        assert runs[name].info.status == "FINISHED", name
        assert _steps(mlflow_tracking_uri, runs[name]) == list(range(1100)), name
