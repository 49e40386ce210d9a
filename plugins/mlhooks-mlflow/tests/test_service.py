"""The MLflow backend in the writer service (``MLHOOKS_SERVICE=1``): real training
scripts in fresh interpreters, a real sqlite store, read back after the fact.

The service is a child process that stores what the training process journals; these
tests kill one or the other mid-run and check what landed: every point once, runs
ended honestly, no file left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from mlhooks.delivery.journal import services_delivering
from mlhooks.testing import wait_for_services, wait_until
from mlhooks_mlflow.testing import MlflowServer

SLOW = 120.0


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLHOOKS_LOCAL_DIR=str(tmp_path / "mlhooks-runs"),
        MLHOOKS_SERVICE="1",
        MLHOOKS_STRICT="1",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore::UserWarning:mlflow",
    )
    env.pop("MLHOOKS_BACKENDS", None)
    env.update(extra)
    return env


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body))
    return path


def _run_to_exit(
    script: Path, env: dict[str, str], cwd: Path, timeout: float = SLOW
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` until its process exits. Its stderr goes to a file: a pipe read to
    its end would also wait for the service, which holds a copy of it until it has
    finished what the script left."""
    with open(cwd / "stderr.txt", "w+") as err:
        done = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=cwd, stdout=subprocess.PIPE,
            stderr=err, text=True, timeout=timeout,
        )  # fmt: skip
        err.seek(0)
        done.stderr = err.read()
    return done


def _runs(tmp_path: Path) -> dict[str, Any]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    found = client.search_runs(["0"])
    return {run.info.run_name: run for run in found}


def _history(tmp_path: Path, run: Any, key: str) -> list[int]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def test_a_script_stores_through_the_service_and_leaves_nothing_behind(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os, threading
        import mlhooks
        from mlhooks.delivery.service_client import client
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge

        mlhooks.autolog()
        X, y = load_diabetes(return_X_y=True)
        with mlhooks.start_run("manual") as run:
            mlhooks.log_params({"lr": 0.1})
            for step in range(5000):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
            Ridge().fit(X, y)
            assert mlhooks.flush(60)  # the journal exists and the service holds it
            from mlhooks.cli.doctor import waiting
            print("doctor", list(waiting().services) == [client.describe()["pid"]])
        # end_run of a user's run waits for the service to store it: read it back here
        import sys
        print("mlflow imported", "mlflow" in sys.modules)  # not by the training side
        from mlflow.tracking import MlflowClient
        stored = MlflowClient().search_runs(["0"], "attributes.run_name = 'manual'")[0]
        print("points", len(MlflowClient().get_metric_history(stored.info.run_id, "loss")))
        print("status", stored.info.status)
        writers = [t.name for t in threading.enumerate() if t.name.startswith("mlhooks-writer")]
        print("writers", writers)
        state = client.describe()
        print("service", state["running"], state["pid"] != os.getpid())
        Ridge(alpha=2.0).fit(X, y)  # a managed run: stored after the script's end
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr
    assert "points 5000" in done.stdout and "status FINISHED" in done.stdout
    assert "writers []" in done.stdout  # nothing writes MLflow in the training process
    assert "service True True" in done.stdout
    assert "doctor True" in done.stdout
    assert "mlflow imported False" in done.stdout
    assert "mlhooks" not in done.stderr.replace("mlhooks-runs", "")  # no warning of ours
    # The script exited once it had handed everything over; its service stores the
    # managed run after that, then leaves nothing behind.
    assert wait_for_services(tmp_path / "mlhooks-runs", SLOW)
    runs = _runs(tmp_path)
    assert set(runs) == {"manual", "Ridge"}
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert _history(tmp_path, runs["manual"], "loss") == list(range(5000))
    assert runs["Ridge"].data.params["alpha"] == "2.0"
    assert not (tmp_path / "mlhooks-runs").exists()  # journals, snapshots: all gone


def test_the_exit_hands_over_and_sync_waits_for_the_service_to_store(tmp_path: Path) -> None:
    """The script's exit does not wait for the backend (here a store another process
    holds locked): the service stores after the script has gone, and ``mlhooks sync``
    waits for it, so that everything is stored once it returns."""
    import sqlite3

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the schema
    lock = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # no other process can read or write the store now
    script = _script(
        tmp_path,
        """
        import mlhooks
        with mlhooks.start_run("handed-over"):
            for step in range(2000):
                mlhooks.log_metric("loss", 1.0, step=step)
        """,
    )
    env = _env(tmp_path, MLHOOKS_STRICT="0", MLHOOKS_FLUSH_TIMEOUT="0")
    done = _run_to_exit(script, env, tmp_path)  # not to the end of its stderr
    assert done.returncode == 0, done.stderr
    root = tmp_path / "mlhooks-runs"
    assert services_delivering(root)  # the script is gone, its service still stores
    lock.execute("ROLLBACK")
    lock.close()
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)],
        env=env, capture_output=True, text=True, timeout=SLOW,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    assert "waiting for the writer service" in synced.stderr
    assert not services_delivering(root)
    run = _runs(tmp_path)["handed-over"]
    assert run.info.status == "FINISHED"
    assert _history(tmp_path, run, "loss") == list(range(2000))  # each point once


def test_a_training_process_killed_mid_run_is_finished_by_the_service(tmp_path: Path) -> None:
    """SIGKILL the training process: every point accepted more than 1 s before the
    kill is in MLflow and the run is KILLED, without running anything afterwards."""
    script = _script(
        tmp_path,
        """
        import sys, time
        import mlhooks
        with mlhooks.start_run("killed"):
            step = 0
            while True:
                mlhooks.log_metric("loss", 1.0, step=step)
                if step % 50 == 0:
                    print(step, time.time(), flush=True)
                step += 1
                time.sleep(0.002)
        """,
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    accepted: list[tuple[int, float]] = []
    started = time.monotonic()
    while time.monotonic() - started < SLOW:
        step, when = process.stdout.readline().split()
        accepted.append((int(step), float(when)))
        if int(step) >= 1500:
            break
    killed_at = time.time()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    older = max(step for step, when in accepted if when < killed_at - 1.0)

    def ended() -> bool:
        runs = _runs(tmp_path)
        return "killed" in runs and runs["killed"].info.status == "KILLED"

    wait_until(ended, timeout=SLOW)
    steps = _history(tmp_path, _runs(tmp_path)["killed"], "loss")
    assert steps == list(range(len(steps)))  # each once, none missing in between
    assert len(steps) > older
    wait_until(lambda: not list((tmp_path / "mlhooks-runs").glob(".journal/*.journal")))


def test_a_service_killed_mid_fit_is_replaced_and_nothing_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    script = _script(
        tmp_path,
        """
        import time
        import mlhooks
        from mlhooks.delivery.service_client import client

        with mlhooks.start_run("survivor"):
            for step in range(6000):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
                if step in (2000, 4000):
                    assert mlhooks.flush(60)
                    time.sleep(0.3)
                    print("killed service", client.kill_for_tests(), flush=True)
                if step % 500 == 0:
                    time.sleep(0.6)  # let the journal thread write what came
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(tmp_path, MLHOOKS_STRICT="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr
    assert wait_for_services(tmp_path / "mlhooks-runs", SLOW)  # it stores after the exit
    assert done.stdout.count("killed service") == 2
    assert done.stderr.count("writer service") >= 1  # told (once per death)
    run = _runs(tmp_path)["survivor"]
    assert run.info.status == "FINISHED"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    points = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in points) == list(range(6000))  # none lost, none twice


def test_without_a_service_lanes_deliver_in_process(tmp_path: Path) -> None:
    """A machine where no subprocess can be started: one warning, everything stored
    by the training process itself."""
    script = _script(
        tmp_path,
        """
        import subprocess
        import mlhooks

        def refuse(*args, **kwargs):
            raise OSError("no subprocesses here")

        subprocess.Popen = refuse  # as in a sandbox that forbids them
        with mlhooks.start_run("alone"):
            for step in range(1000):
                mlhooks.log_metric("loss", 1.0, step=step)
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(tmp_path, MLHOOKS_STRICT="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("writer service cannot be used") == 1
    run = _runs(tmp_path)["alone"]
    assert run.info.status == "FINISHED"
    assert _history(tmp_path, run, "loss") == list(range(1000))


@pytest.mark.parametrize("mode", ["0", "1"])
def test_both_modes_store_the_same(tmp_path: Path, mode: str) -> None:
    script = _script(
        tmp_path,
        """
        import mlhooks
        mlhooks.autolog()
        from sklearn.datasets import load_iris
        from sklearn.model_selection import GridSearchCV
        from sklearn.tree import DecisionTreeClassifier
        X, y = load_iris(return_X_y=True)
        GridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2, 3]}, cv=2).fit(X, y)
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(tmp_path, MLHOOKS_SERVICE=mode),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr
    assert wait_for_services(tmp_path / "mlhooks-runs", SLOW)  # it stores after the exit
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(["0"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {r.data.params["max_depth"] for r in children} == {"1", "2", "3"}
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.parametrize("mode", ["0", "1"])
def test_each_run_lands_in_the_experiment_mlflow_settings_chose_as_it_started(
    tmp_path: Path, mode: str
) -> None:
    """MLflow's settings change between runs: ``MLFLOW_EXPERIMENT_NAME`` set, then
    changed; ``mlflow.set_experiment("a")``, a fit, ``set_experiment("b")``, a fit. Each
    run lands in the experiment the settings chose as it started, in the writer service
    (a process started before they changed, with its own MLflow) as in process."""
    script = _script(
        tmp_path,
        """
        import os
        import mlflow
        import mlhooks
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        mlhooks.autolog()
        X, y = load_iris(return_X_y=True)
        for name, variable in [("default", None), ("nightly", "nightly"), ("weekly", "weekly")]:
            if variable:
                os.environ["MLFLOW_EXPERIMENT_NAME"] = variable
            with mlhooks.start_run(name):
                mlhooks.log_metric("loss", 1.0)
        mlflow.set_experiment("a")  # MLflow's choice wins over the variable
        LogisticRegression(max_iter=201).fit(X, y)
        mlflow.set_experiment("b")
        LogisticRegression(max_iter=202).fit(X, y)
        """,
    )
    done = _run_to_exit(script, _env(tmp_path, MLHOOKS_SERVICE=mode), tmp_path)
    assert done.returncode == 0, done.stderr
    assert wait_for_services(tmp_path / "mlhooks-runs", SLOW)  # it stores after the exit
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    landed = {}
    for run in client.search_runs(list(experiments)):
        name = run.data.params.get("max_iter", run.info.run_name)
        landed[name] = experiments[run.info.experiment_id]
    assert landed == {
        "default": "Default",
        "nightly": "nightly",
        "weekly": "weekly",
        "201": "a",
        "202": "b",
    }
    assert "mlhooks" not in done.stderr.replace("mlhooks-runs", "")  # no warning of ours


def test_the_batch_size_is_mlflows() -> None:
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    from mlhooks_mlflow import MlflowBackend

    assert MlflowBackend.max_batch_size == MAX_METRICS_PER_BATCH


def test_a_server_down_mid_run_is_told_once_and_nothing_waits_or_is_lost(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """The tracking server dies while the service stores a script's run: the script is
    told once (by its own stderr), its run's end and its exit do not wait for the
    server, and what the service spooled is stored once by mlhooks sync."""
    server = new_mlflow_server()
    server.start()
    script = _script(
        tmp_path,
        f"""
        import time
        import mlhooks
        with mlhooks.start_run("outage"):
            for step in range(3000):
                mlhooks.log_metric("loss", 1.0, step=step)
                if step == 1000:
                    assert mlhooks.flush(60)
                    open("{tmp_path / "flushed"}", "w").close()
                    while not __import__("os").path.exists("{tmp_path / "killed"}"):
                        time.sleep(0.05)
            ended = time.monotonic()
        print("end_run took", time.monotonic() - ended)
        """,
    )
    env = _env(
        tmp_path,
        MLFLOW_TRACKING_URI=server.uri,
        MLHOOKS_STRICT="0",
        MLHOOKS_FLUSH_TIMEOUT="120",
        MLHOOKS_EXIT_TIMEOUT="120",
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: (tmp_path / "flushed").exists(), timeout=SLOW)
    server.kill()
    (tmp_path / "killed").touch()
    started = time.monotonic()
    _out, err = process.communicate(timeout=SLOW)
    took = time.monotonic() - started
    assert process.returncode == 0, err
    assert err.count("; spooling to") == 1, err  # the outage, told once
    assert took < 60  # neither end_run nor exit waited MLHOOKS_*_TIMEOUT for the server
    server.start()
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(tmp_path / "mlhooks-runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert synced.returncode == 0, synced.stderr
    client = MlflowClient(server.uri)
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
    assert steps == list(range(3000))


def test_a_service_killed_after_its_process_exited_leaves_its_journal_to_sync(
    tmp_path: Path,
) -> None:
    """The training process exits while the service is still storing; the service is
    killed then: mlhooks sync stores the rest from the journal's cursor, once."""
    script = _script(
        tmp_path,
        """
        import os
        import mlhooks
        from mlhooks.delivery.service_client import client
        with mlhooks.start_run("orphan"):
            for step in range(20000):
                mlhooks.log_metric("loss", 1.0, step=step)
        import time
        while client.describe()["pid"] is None:  # started on a thread of its own
            time.sleep(0.01)
        open("service.pid", "w").write(str(client.describe()["pid"]))
        """,
    )
    env = _env(tmp_path, MLHOOKS_EXIT_TIMEOUT="0", MLHOOKS_FLUSH_TIMEOUT="0")
    done = _run_to_exit(script, env, tmp_path)
    assert done.returncode == 0, done.stderr
    pid = int((tmp_path / "service.pid").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=SLOW)
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(tmp_path / "mlhooks-runs")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert synced.returncode == 0, synced.stderr
    run = _runs(tmp_path)["orphan"]
    assert run.info.status in ("FINISHED", "KILLED")
    assert _history(tmp_path, run, "loss") == list(range(20000))


def test_an_outage_met_after_the_script_exited_is_told_on_its_stderr(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """The server does not answer, and the script exits before the service first tries
    it: the service tells the outage and where it spools on the script's stderr, once,
    and lets go of it once that is done (a caller reading it to its end, as here,
    stops waiting then); `mlhooks sync` stores the run later."""
    server = new_mlflow_server()  # its port stays closed until start()
    script = _script(
        tmp_path,
        """
        import mlhooks
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge

        mlhooks.autolog()
        Ridge().fit(*load_diabetes(return_X_y=True))
        """,
    )
    env = _env(tmp_path, MLFLOW_TRACKING_URI=server.uri, MLHOOKS_STRICT="0")
    done = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=SLOW,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "MlhooksWarning: " in line]
    assert sum("unreachable since" in line for line in told) == 1, done.stderr
    assert all("spool" in line for line in told), done.stderr  # where the data is
    assert len(told) == len(set(told)), done.stderr
    server.start()
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(tmp_path / "mlhooks-runs")],
        env=env, capture_output=True, text=True, timeout=SLOW,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    (run,) = MlflowClient(server.uri).search_runs(["0"])
    assert run.info.status == "FINISHED" and run.data.params["alpha"] == "1.0"


def test_autolog_starts_the_service_which_imports_mlflow_before_the_first_fit(
    tmp_path: Path,
) -> None:
    """``autolog()`` starts the service in the background, at a lower CPU priority, and
    the service imports MLflow while the script goes on (loading its data, say), never
    the script itself; the first fit's run then lands as usual."""
    script = _script(
        tmp_path,
        """
        import sys, time
        import mlhooks
        from mlhooks.delivery.service_client import client
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge

        mlhooks.autolog()
        deadline = time.monotonic() + 300  # a loaded machine: the service is niced
        while client.describe()["warmed"] != ["mlflow"] and time.monotonic() < deadline:
            time.sleep(0.02)
        print("WARMED", client.describe()["warmed"], "mlflow" in sys.modules)
        import os
        lower = os.getpriority(os.PRIO_PROCESS, client.describe()["pid"]) - os.nice(0)
        print("NICER BY", lower)
        Ridge().fit(*load_diabetes(return_X_y=True))
        assert mlhooks.flush(120)
        print("IMPORTED", "mlflow" in sys.modules)
        """,
    )
    done = _run_to_exit(script, _env(tmp_path), tmp_path, timeout=3 * SLOW)
    assert done.returncode == 0, done.stderr
    assert "WARMED ['mlflow'] False" in done.stdout, done.stdout + done.stderr
    assert "IMPORTED False" in done.stdout
    assert "NICER BY 5" in done.stdout  # where cores are short, the training goes first
    wait_for_services(tmp_path / "mlhooks-runs", SLOW)
    run = _runs(tmp_path)["Ridge"]
    assert run.info.status == "FINISHED" and run.data.params["alpha"] == "1.0"


def test_a_warm_service_is_replaced_when_the_environment_changed_before_the_first_fit(
    tmp_path: Path,
) -> None:
    """A variable set after ``autolog()`` (credentials, say) but before the first fit
    reaches the backend: the service started early, which does not have it, is let go
    and the one that stores the run is started with it."""
    script = _script(
        tmp_path,
        """
        import os, time
        import mlhooks
        from mlhooks.delivery.service_client import client
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge

        mlhooks.autolog()
        deadline = time.monotonic() + 300  # a loaded machine: the service is niced
        while client.describe()["pid"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        early = client.describe()["pid"]
        os.environ["MLHOOKS_TEST_SET_LATE"] = "yes"
        Ridge().fit(*load_diabetes(return_X_y=True))
        assert mlhooks.flush(120)
        serving = client.describe()["pid"]
        environ = open(f"/proc/{serving}/environ", "rb").read().split(b"\\0")
        print("PIDS", early, serving, b"MLHOOKS_TEST_SET_LATE=yes" in environ)
        """,
    )
    done = _run_to_exit(script, _env(tmp_path), tmp_path, timeout=3 * SLOW)
    assert done.returncode == 0, done.stderr
    early, serving, has_it = done.stdout.split("PIDS ", 1)[1].split()
    assert early != "None" and early != serving and has_it == "True", done.stdout
    wait_until(lambda: not Path(f"/proc/{early}").exists(), timeout=SLOW)  # it ended
    wait_for_services(tmp_path / "mlhooks-runs", SLOW)
    assert _runs(tmp_path)["Ridge"].info.status == "FINISHED"


def test_a_warm_up_the_trees_service_refuses_is_done_by_a_service_of_its_own(
    tmp_path: Path,
) -> None:
    """A script whose service runs starts a child with another environment; the child's
    ``autolog()`` asks the tree's service, which refuses it (another environment), and
    warms up a service of its own (before, the refusal left it with none until a fit)."""
    script = _script(
        tmp_path,
        '''
        import os, subprocess, sys
        import mlhooks

        with mlhooks.start_run("parent"):
            mlhooks.log_metric("loss", 1.0)
        assert mlhooks.flush(120)
        child = """
        import time, mlhooks
        from mlhooks.delivery.service_client import client
        mlhooks.autolog()
        deadline = time.monotonic() + 300
        while client.describe()["warmed"] != ["mlflow"] and time.monotonic() < deadline:
            time.sleep(0.05)
        print("CHILD", client.describe()["warmed"])
        """
        env = {**os.environ, "MLHOOKS_TEST_CHILD": "1"}
        done = subprocess.run([sys.executable, "-c", child.replace("\\n        ", "\\n")],
                              env=env, capture_output=True, text=True, timeout=360)
        print(done.stdout, done.stderr[-2000:])
        ''',
    )
    done = _run_to_exit(script, _env(tmp_path), tmp_path, timeout=3 * SLOW)
    assert done.returncode == 0, done.stderr
    assert "CHILD ['mlflow']" in done.stdout, done.stdout + done.stderr
