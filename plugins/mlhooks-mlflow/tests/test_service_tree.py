"""One writer service per process tree (``MLHOOKS_SERVICE=1``): the children of a
training process (``os.fork``, ``multiprocessing`` fork and spawn, joblib's loky
workers) attach to their parent's service instead of starting their own; a child that
cannot use it starts its own, which ends with it. Real scripts in fresh interpreters,
a real sqlite store, read back after the fact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from mlhooks.core.processes import is_running
from mlhooks.testing import wait_until

SLOW = 300.0
POINTS = 2000

CHILDREN = """
import json, os, sys, time
from pathlib import Path

import mlhooks
from mlhooks.delivery.service_client import client

FOLDER = Path(sys.argv[1])
METHOD = sys.argv[2]


def work(index):
    import mlhooks
    from mlhooks.delivery.service_client import client

    with mlhooks.start_run(f"child-{index}", nested=True):
        mlhooks.log_param("child", index)
        for step in range(POINTS):
            mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
        assert mlhooks.flush(120)
        state = client.describe()
        said = {"pid": os.getpid(), "service": state["pid"], "attached": state["attached"]}
        (FOLDER / f"child-{index}.json").write_text(json.dumps(said))
    return index


if __name__ == "__main__":
    with mlhooks.start_run("parent"):
        mlhooks.log_metric("x", 1.0)
        assert mlhooks.flush(120)
        said = {"pid": os.getpid(), "service": client.describe()["pid"]}
        (FOLDER / "parent.json").write_text(json.dumps(said))
        if METHOD == "os.fork":
            pids = []
            for index in range(2):
                pid = os.fork()
                if pid == 0:
                    try:
                        work(index)
                    finally:
                        os._exit(0)
                pids.append(pid)
            print([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids])
        elif METHOD in ("fork", "spawn"):
            import multiprocessing as mp

            context = mp.get_context(METHOD)
            processes = [context.Process(target=work, args=(i,)) for i in range(2)]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
            print([process.exitcode for process in processes])
        else:
            from joblib import Parallel, delayed

            Parallel(n_jobs=2)(delayed(work)(i) for i in range(2))
            print([0, 0])
""".replace("POINTS", str(POINTS))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLHOOKS_BACKENDS="mlflow",
        MLHOOKS_LOCAL_DIR=str(tmp_path / "mlhooks-runs"),
        MLHOOKS_SERVICE="1",
        MLHOOKS_STRICT="1",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore::UserWarning:mlflow",
    )
    env.update(extra)
    return env


def _run(tmp_path: Path, code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"  # spawn needs a real module to import `work` from
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )


def _runs(tmp_path: Path) -> dict[str, Any]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {run.info.run_name: run for run in client.search_runs(["0"])}


def _steps(tmp_path: Path, run: Any, key: str = "loss") -> list[int]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def _said(tmp_path: Path, name: str) -> dict[str, Any]:
    """What a script wrote to ``<name>.json``, once it is all there (a script that still
    runs may be between creating the file and writing it)."""
    found: dict[str, Any] = {}

    def written() -> bool:
        nonlocal found
        try:
            found = json.loads((tmp_path / f"{name}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return True

    wait_until(written, timeout=30)
    return found


def _services_done(tmp_path: Path, *pids: int) -> None:
    """Every service named is gone, and so is every journal under the local dir."""
    wait_until(lambda: not any(is_running(pid) for pid in pids), timeout=SLOW)
    assert not list((tmp_path / "mlhooks-runs").glob(".journal/*.journal"))


@pytest.mark.parametrize("method", ["os.fork", "fork", "spawn", "loky"])
def test_children_attach_to_their_parents_service(tmp_path: Path, method: str) -> None:
    """Two children of a training process whose service runs, each with a run of
    2,000 points: both are served by their parent's service (one service for three
    processes), and every point is stored once, each run FINISHED."""
    done = _run(tmp_path, CHILDREN, method)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[0, 0]"), done.stdout + done.stderr
    assert "mlhooks" not in done.stderr.replace("mlhooks-runs", ""), done.stderr
    parent = _said(tmp_path, "parent")
    for index in range(2):
        child = _said(tmp_path, f"child-{index}")
        assert child["pid"] != parent["pid"]
        assert child["attached"] is True, child
        assert child["service"] == parent["service"], (parent, child)
    _services_done(tmp_path, parent["service"])
    runs = _runs(tmp_path)
    assert sorted(runs) == ["child-0", "child-1", "parent"]
    assert all(run.info.status == "FINISHED" for run in runs.values())
    for index in range(2):
        run = runs[f"child-{index}"]
        assert run.data.params["child"] == str(index)
        assert _steps(tmp_path, run) == list(range(POINTS))
    assert _steps(tmp_path, runs["parent"], "x") == [0]


ORPHAN = """
import json, os, sys, time
from pathlib import Path

import mlhooks
from mlhooks.delivery.service_client import client

FOLDER = Path(sys.argv[1])

with mlhooks.start_run("parent"):
    mlhooks.log_metric("x", 1.0)
    assert mlhooks.flush(120)
    parent = {"pid": os.getpid(), "service": client.describe()["pid"]}
(FOLDER / "parent.json").write_text(json.dumps(parent))
if os.fork() == 0:
    try:
        with mlhooks.start_run("orphan"):
            for step in range(1000):
                mlhooks.log_metric("loss", 1.0, step=step)
            assert mlhooks.flush(120)  # attached while the parent lives
            first = client.describe()
            while os.getppid() == parent["pid"]:  # until the parent has exited
                time.sleep(0.05)
            for step in range(1000, 3000):
                mlhooks.log_metric("loss", 1.0, step=step)
            assert mlhooks.flush(120)
            later = client.describe()
        said = {"first": first["pid"], "later": later["pid"], "attached": later["attached"]}
        (FOLDER / "orphan.json").write_text(json.dumps(said))
    finally:
        os._exit(0)
"""


def test_a_child_goes_on_with_the_service_when_its_parent_exits_first(tmp_path: Path) -> None:
    """A forked child attaches while its parent lives, then its parent exits: the
    service goes on for the child (the same service, no warning), which stores 3,000
    points; the service ends once the child is gone."""
    done = _run(tmp_path, ORPHAN)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: (tmp_path / "orphan.json").exists(), timeout=SLOW)
    parent, orphan = _said(tmp_path, "parent"), _said(tmp_path, "orphan")
    assert orphan["first"] == orphan["later"] == parent["service"], (parent, orphan)
    assert orphan["attached"] is True
    _services_done(tmp_path, parent["service"])
    runs = _runs(tmp_path)
    assert runs["parent"].info.status == "FINISHED"
    assert runs["orphan"].info.status == "FINISHED", done.stderr
    assert _steps(tmp_path, runs["orphan"]) == list(range(3000))


OWN = """
import json, os, sys
from pathlib import Path

import mlhooks
from mlhooks.delivery.service_client import client

FOLDER = Path(sys.argv[1])


def work():
    import mlhooks
    from mlhooks.delivery.service_client import client

    with mlhooks.start_run("child"):
        for step in range(1000):
            mlhooks.log_metric("loss", 1.0, step=step)
        assert mlhooks.flush(120)
        state = client.describe()
    said = {"service": state["pid"], "attached": state["attached"]}
    (FOLDER / "child.json").write_text(json.dumps(said))


if __name__ == "__main__":
    import multiprocessing as mp

    with mlhooks.start_run("parent"):
        mlhooks.log_metric("x", 1.0)
        assert mlhooks.flush(120)
        service = client.describe()["pid"]
        os.environ["MLFLOW_TRACKING_TOKEN"] = "another"  # the child's environment differs
        child = mp.get_context("spawn").Process(target=work)
        child.start()
        child.join()
        said = json.loads((FOLDER / "child.json").read_text())
        said["parent_service"] = service
        (FOLDER / "child.json").write_text(json.dumps(said))
        print("child", child.exitcode)
"""


def test_a_child_whose_environment_differs_starts_its_own_service(tmp_path: Path) -> None:
    """A service runs what its starter's environment says (credentials, settings): a
    child whose environment differs is refused and starts a service of its own, which
    ends with the child; both runs are stored whole."""
    done = _run(tmp_path, OWN)
    assert done.returncode == 0, done.stderr
    assert "child 0" in done.stdout
    said = _said(tmp_path, "child")
    assert said["attached"] is False
    assert said["service"] != said["parent_service"]
    _services_done(tmp_path, said["service"], said["parent_service"])
    runs = _runs(tmp_path)
    assert runs["child"].info.status == "FINISHED"
    assert _steps(tmp_path, runs["child"]) == list(range(1000))


def test_a_childs_own_service_ends_with_the_child(tmp_path: Path) -> None:
    """A parent that never used a service starts a child that does: the child's
    service ends when the child does, while the parent still runs."""
    code = """
    import json, os, sys, time
    from pathlib import Path

    import mlhooks

    FOLDER = Path(sys.argv[1])
    pid = os.fork()
    if pid == 0:
        from mlhooks.delivery.service_client import client

        try:
            with mlhooks.start_run("child"):
                mlhooks.log_metric("x", 1.0)
                assert mlhooks.flush(120)
                state = client.describe()
            (FOLDER / "child.json").write_text(json.dumps(state))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    service = json.loads((FOLDER / "child.json").read_text())["pid"]
    from mlhooks.core.processes import is_running

    deadline = time.monotonic() + 120
    while is_running(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("service ended", not is_running(service))
    """
    done = _run(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "service ended True" in done.stdout
    assert _said(tmp_path, "child")["attached"] is False
    assert _runs(tmp_path)["child"].info.status == "FINISHED"


def test_doctor_shows_the_service_its_processes_and_its_backlog(tmp_path: Path) -> None:
    """While a parent and its attached child wait with points not stored yet (the
    service is held up on purpose), ``mlhooks doctor`` names the service's pid, the
    two processes it serves and a backlog; once they are done, none is at work."""
    code = """
    import json, os, sys, time
    from pathlib import Path

    import mlhooks
    from mlhooks.delivery import lanes
    from mlhooks.delivery.service_client import client

    FOLDER = Path(sys.argv[1])


    def wait_for(name):
        while not (FOLDER / name).exists():
            time.sleep(0.05)


    with mlhooks.start_run("parent"):
        mlhooks.log_metric("x", 1.0)
        assert mlhooks.flush(120)
        service = client.describe()["pid"]
        pid = os.fork()
        if pid == 0:
            try:
                with mlhooks.start_run("child", nested=True):
                    mlhooks.log_metric("x", 1.0)
                    assert mlhooks.flush(120)  # attached
                    (FOLDER / "child-ready").touch()
                    wait_for("held")
                    for step in range(500):
                        mlhooks.log_metric("loss", 1.0, step=step)
                    time.sleep(1.5)  # journaled
                    (FOLDER / "child-logged").touch()
                    wait_for("go")
            finally:
                os._exit(0)
        wait_for("child-ready")
        os.kill(service, 19)  # SIGSTOP: the service stores nothing meanwhile
        (FOLDER / "held").touch()
        for step in range(500):
            mlhooks.log_metric("loss", 1.0, step=step)
        time.sleep(1.5)
        wait_for("child-logged")
        (FOLDER / "said.json").write_text(json.dumps({"service": service, "child": pid}))
        wait_for("go")
        os.kill(service, 18)  # SIGCONT
        os.waitpid(pid, 0)
    """
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    env = _env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (tmp_path / "said.json").exists(), timeout=SLOW)
        said = _said(tmp_path, "said")
        doctor = _doctor(env)
        shown = (
            f"writer service (pid {said['service']}) at work for processes "
            f"{', '.join(str(p) for p in sorted([process.pid, said['child']]))}: "
        )
        assert shown in doctor.stdout, doctor.stdout + doctor.stderr
        backlog = int(doctor.stdout.split(shown, 1)[1].split()[0])
        assert backlog >= 2  # at least a batch of each process
        document = json.loads(_doctor(env, "--format", "json").stdout)["waiting"]
        assert document["service_enabled"] is True
        assert document["services"] == {str(said["service"]): backlog}
        assert document["serving"] == {str(said["service"]): sorted([process.pid, said["child"]])}
    finally:
        (tmp_path / "go").touch()
        _out, err = process.communicate(timeout=SLOW)
    assert process.returncode == 0, err
    _services_done(tmp_path, said["service"])
    doctor = _doctor(env)
    assert "writer service: on (MLHOOKS_SERVICE); none at work under" in doctor.stdout
    runs = _runs(tmp_path)
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert _steps(tmp_path, runs["child"]) == list(range(500))
    assert _steps(tmp_path, runs["parent"]) == list(range(500))
    off = _doctor({**env, "MLHOOKS_SERVICE": "0"})
    assert "writer service: off (MLHOOKS_SERVICE)" in off.stdout


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlhooks", "doctor", "--no-probe", "--backend", "local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )


def test_a_service_shares_nothing_with_another_users_process() -> None:
    """Whoever connects must be this user's (the kernel says who is at the other end)."""
    from mlhooks.delivery import service_tree

    if not service_tree.supported():
        pytest.skip("services are shared on Linux only")
    address = f"\0mlhooks-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = service_tree.listen(address)
    assert listener is not None
    sock = service_tree.connect(address)
    assert sock is not None
    accepted, _ = listener.accept()
    assert service_tree.peer(accepted) == (os.getpid(), os.getuid())
    for each in (sock, accepted, listener):
        each.close()
    assert service_tree.connect(address) is None  # nobody listens: refused at once
