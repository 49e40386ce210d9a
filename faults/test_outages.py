"""Outages of a real ``mlflow server`` on 127.0.0.1 (issue 13, items 1 and 7).

A training script runs in its own interpreter with MLflow's default client settings
(its retries take minutes) while the test kills, pauses or withholds its server. Each
line the script writes is timestamped as it arrives, so that the test measures how
soon the user hears of an outage; what landed is read back with ``MlflowClient`` once
the server answers again. Each case says what must hold in its docstring; the figures
(kill to warning, how long ``end_run`` and exit wait) go to the test report as
properties and are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from conftest import wait_for_services
from mlhooks.delivery.spool import find_spools
from mlhooks_mlflow.backend import RUN_ID_TAG
from mlhooks_mlflow.testing import MlflowServer, stored_models

PROMISED_WARNING_S = 5.0
"""The user is warned within this many seconds of the server going away."""
FLUSH_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 120.0
"""Long on purpose: a run's end or an exit that waited for the server would show."""
BACKEND = r"backend 'mlflow' \(MLflow at http://127\.0\.0\.1:\d+\)"
UNREACHABLE = (
    BACKEND + r" unreachable since \d\d:\d\d:\d\d; spooling to \S+; training is not affected"
)
REACHABLE = BACKEND + r" reachable again at \d\d:\d\d:\d\d; \d+ operations replayed"
SERVED_WAIT_S = 120.0
"""How long the test waits for anything the script or the server does (never asserted
as a bound: the machine is shared)."""


@dataclass
class Line:
    text: str
    at: float
    """``time.monotonic()`` when the test read it."""


class Trainee:
    """A training script in its own interpreter; every line it prints is kept with the
    time it arrived, as it arrives."""

    def __init__(self, code: str, env: dict[str, str], cwd: Path) -> None:
        self.flags = cwd / "flags"
        self.flags.mkdir(parents=True, exist_ok=True)
        self.lines: dict[str, list[Line]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(self.flags)],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.exited_at: float | None = None
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.process, name)
        for text in stream:
            with self._changed:
                self.lines[name].append(Line(text.rstrip("\n"), time.monotonic()))
                self._changed.notify_all()

    def wait_for(self, pattern: str, stream: str = "stderr", count: int = 1) -> Line:
        """The ``count``-th line of ``stream`` that matches ``pattern``, once it came."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + SERVED_WAIT_S
        with self._changed:
            while True:
                found = [line for line in self.lines[stream] if regex.search(line.text)]
                if len(found) >= count:
                    return found[count - 1]
                if self.process.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(f"the script ended without {pattern!r}:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} in {SERVED_WAIT_S}s:\n{self.output()}")
                self._changed.wait(min(left, 0.5))

    def value(self, label: str) -> str:
        """What the script printed after ``label`` on stdout (``label value``)."""
        return self.wait_for(rf"^{label} ", "stdout").text.split(" ", 1)[1]

    def flag(self, name: str) -> None:
        """Let the script go on past ``name``."""
        (self.flags / name).touch()

    def finish(self) -> int:
        """Wait for the script's end; its exit code (the time it ended: ``exited_at``)."""
        code = self.process.wait(SERVED_WAIT_S)
        self.exited_at = time.monotonic()
        for reader in self._readers:
            reader.join(10)
        return code

    def output(self) -> str:
        return "\n".join(
            f"{name}: {line.text}" for name, lines in self.lines.items() for line in lines
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def trainees(tmp_path: Path) -> Iterator[Callable[..., Trainee]]:
    """``trainees(code, server, **env)`` starts a training script writing to ``server``
    (killed after the test if it still runs)."""
    started: list[Trainee] = []

    def start(code: str, server: MlflowServer, **extra: str) -> Trainee:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MLFLOW_HTTP_REQUEST_", "MLFLOW_EXPERIMENT_"))
        }  # MLflow's own defaults: retries that take minutes
        env.update(
            MLFLOW_TRACKING_URI=server.uri,
            MLHOOKS_BACKENDS="mlflow",
            MLHOOKS_LOCAL_DIR=str(tmp_path / "mlhooks-runs"),
            MLHOOKS_FLUSH_TIMEOUT=str(FLUSH_TIMEOUT_S),
            MLHOOKS_EXIT_TIMEOUT=str(EXIT_TIMEOUT_S),
            PYTHONUNBUFFERED="1",
            **extra,
        )
        trainee = Trainee(code, env, tmp_path)
        started.append(trainee)
        return trainee

    yield start
    for trainee in started:
        trainee.kill()


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, list[float]]]:
    """The measurements of this module's cases, printed at its end."""
    measured: dict[str, list[float]] = {}
    yield measured
    for name, values in measured.items():
        shown = ", ".join(f"{value:.2f}" for value in values)
        print(f"\n{name}: median {statistics.median(values):.2f} s of [{shown}]")


def stored_run(client: MlflowClient, run_id: str) -> Any:
    """The MLflow run of mlhooks run ``run_id``, or None."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")
    assert len(runs) <= 1, f"{len(runs)} MLflow runs for mlhooks run {run_id}"
    return runs[0] if runs else None


def steps_of(client: MlflowClient, mlflow_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(mlflow_id, key))


def wait_until_stored(client: MlflowClient, run_id: str, key: str, least: int) -> None:
    """Until the server holds at least ``least`` points of ``key`` of the run."""
    deadline = time.monotonic() + SERVED_WAIT_S
    while True:
        run = stored_run(client, run_id)
        if run is not None and len(steps_of(client, run.info.run_id, key)) >= least:
            return
        assert time.monotonic() < deadline, f"{key} of {run_id} never reached the server"
        time.sleep(0.2)


def assert_all_landed_once(client: MlflowClient, trainee: Trainee, *, rounds: bool) -> Any:
    """Everything the script logged is stored, each point once, and the run FINISHED."""
    run = stored_run(client, trainee.value("run"))
    assert run is not None
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1" and run.data.params["depth"] == "3"
    steps = int(trainee.value("steps"))
    assert steps_of(client, run.info.run_id, "loss") == list(range(steps))
    if rounds:  # XGBoost's per-round metric, and the model
        done = int(trainee.value("rounds"))
        assert steps_of(client, run.info.run_id, "validation_0-logloss") == list(range(done))
        assert "n_estimators" in run.data.params
        stored = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        stored |= set(stored_models(client, run.info.run_id))  # MLflow 3: a logged model
        assert "model" in stored, stored
    return run


def warned_within(line: Line, since: float, figures: list[float]) -> None:
    """The outage warning came within the promised time of ``since``."""
    seconds = line.at - since
    figures.append(seconds)
    assert seconds <= PROMISED_WARNING_S, f"warned {seconds:.1f}s after the outage began"


TRAINING = """
    import sys, time
    from pathlib import Path

    import numpy as np
    import xgboost as xgb

    import mlhooks

    flags = Path(sys.argv[1])
    step = 0


    def say(label, value=""):
        print(label, value, flush=True)


    def until(flag, work):
        while not (flags / flag).exists():
            work()


    def log_step():
        global step
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
        step += 1
        time.sleep(0.005)


    class Slow(xgb.callback.TrainingCallback):
        # a training loop that takes its time: it stops when the test says so
        def after_iteration(self, model, epoch, evals_log):
            time.sleep(0.02)
            return (flags / "fitted").exists()


    mlhooks.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    run = mlhooks.start_run("outage")
    say("run", run.run_id)
    mlhooks.log_params({"lr": 0.1, "depth": 3})
"""


def test_a_server_killed_three_times_mid_run_loses_nothing_and_is_told_each_time(
    new_mlflow_server: Callable[[], MlflowServer],
    trainees: Callable[..., Trainee],
    figures: dict[str, list[float]],
    record_property: Callable[[str, object], None],
) -> None:
    """The server is SIGKILLed and started again on the same port and store three
    times while one script trains: while it logs step metrics, while an autologged
    XGBoost fit trains (the writer rests then), and just before the user's run ends.
    Each time the script warns within 5 s ('unreachable since ...; spooling to ...;
    training is not affected') and, once the server is back, says it is reachable again
    with the number of operations replayed. The run ends at once while the server is
    down. Every metric point (step metrics, every boosting round) is stored once, with
    the params and the model, and the run is FINISHED, with no `mlhooks sync`."""
    server = new_mlflow_server()
    server.start()
    client = MlflowClient(server.uri)
    trainee = trainees(
        TRAINING
        + """
    until("logged", log_step)
    say("fitting")
    model = xgb.XGBClassifier(n_estimators=100_000, max_depth=3, callbacks=[Slow()])
    model.fit(X, y, eval_set=[(X, y)], verbose=False)
    say("rounds", model.get_booster().num_boosted_rounds())
    until("ending", log_step)
    started = time.perf_counter()
    mlhooks.end_run()
    say("end_run", time.perf_counter() - started)
    say("steps", step)
    until("exit", lambda: time.sleep(0.05))
    """,
        server,
    )
    run_id = trainee.value("run")
    kill_to_warning = figures.setdefault("SIGKILL to warning", [])

    wait_until_stored(client, run_id, "loss", 1)  # data flows: now the server dies
    killed = server.kill()
    warned_within(trainee.wait_for(UNREACHABLE), killed, kill_to_warning)
    restarted = time.monotonic()
    server.start()
    assert trainee.wait_for(REACHABLE).at > restarted
    trainee.flag("logged")

    trainee.wait_for("^fitting", "stdout")
    time.sleep(1.0)  # well inside the fit, which trains until told
    killed = server.kill()
    warned_within(trainee.wait_for(UNREACHABLE, count=2), killed, kill_to_warning)
    restarted = time.monotonic()
    server.start()
    assert trainee.wait_for(REACHABLE, count=2).at > restarted
    trainee.flag("fitted")

    trainee.wait_for("^rounds", "stdout")
    killed = server.kill()
    warned_within(trainee.wait_for(UNREACHABLE, count=3), killed, kill_to_warning)
    trainee.flag("ending")  # the user's run ends while the server is known down
    ended = float(trainee.value("end_run"))
    figures.setdefault("end_run while the server is known down", []).append(ended)
    assert ended < FLUSH_TIMEOUT_S / 4, f"end_run waited {ended:.1f}s for a server that is down"
    trainee.wait_for("ended without waiting for backend 'mlflow'")
    restarted = time.monotonic()
    server.start()
    assert trainee.wait_for(REACHABLE, count=3).at > restarted
    trainee.flag("exit")
    assert trainee.finish() == 0, trainee.output()

    assert_all_landed_once(client, trainee, rounds=True)
    record_property("sigkill_to_warning_s", kill_to_warning)
    record_property("end_run_while_down_s", ended)


QUIET_WAIT_S = 4.0
"""How long a script with nothing left to store runs on after its server went away: more
than a watch needs to find a server gone while something waits to be stored."""


def test_a_server_gone_once_everything_is_stored_is_told_only_when_something_waits(
    new_mlflow_server: Callable[[], MlflowServer],
    trainees: Callable[..., Trainee],
    figures: dict[str, list[float]],
) -> None:
    """The script stores what it logged (``flush()``), then the server stops, as a user
    closes ``mlflow ui`` after a run: nothing waits to be stored, so nothing is at risk
    and the script says nothing. Once it logs again, it warns within 5 s; once the
    server is back, everything is stored once and the run is FINISHED."""
    server = new_mlflow_server()
    server.start()
    client = MlflowClient(server.uri)
    trainee = trainees(
        TRAINING
        + """
    for _ in range(20):
        log_step()
    say("stored", mlhooks.flush(120))
    until("log", lambda: time.sleep(0.05))
    until("ending", log_step)
    mlhooks.end_run()
    say("steps", step)
    """,
        server,
    )
    assert trainee.value("stored") == "True"
    stopped = server.kill()
    time.sleep(QUIET_WAIT_S)
    assert not [line for line in trainee.lines["stderr"] if "mlhooks" in line.text], (
        trainee.output()
    )
    trainee.flag("log")
    logging_again = time.monotonic()
    warned = trainee.wait_for(UNREACHABLE)
    warned_within(warned, logging_again, figures.setdefault("logging again to warning", []))
    assert warned.at - stopped > QUIET_WAIT_S
    restarted = time.monotonic()
    server.start()
    assert trainee.wait_for(REACHABLE).at > restarted
    trainee.flag("ending")
    assert trainee.finish() == 0, trainee.output()
    assert_all_landed_once(client, trainee, rounds=False)


def test_a_paused_server_neither_blocks_training_nor_loses_anything(
    new_mlflow_server: Callable[[], MlflowServer],
    trainees: Callable[..., Trainee],
    figures: dict[str, list[float]],
    record_property: Callable[[str, object], None],
) -> None:
    """The server is SIGSTOPped mid-run (its port still takes connections, nothing
    answers: a request in flight hangs) and SIGCONTed later. The script warns within
    5 s, then fits an autologged XGBoost model, logs on and ends its run while the
    server is still stopped: training finishes (its marker file is there while the
    server is stopped). Once the server goes on, the script says it is reachable again,
    and everything is stored once, the run FINISHED, with no `mlhooks sync`."""
    server = new_mlflow_server()
    server.start()
    client = MlflowClient(server.uri)
    trainee = trainees(
        TRAINING
        + """
    until("stopped", log_step)
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3)
    model.fit(X, y, eval_set=[(X, y)], verbose=False)
    say("rounds", model.get_booster().num_boosted_rounds())
    for _ in range(500):
        log_step()
    started = time.perf_counter()
    mlhooks.end_run()
    say("end_run", time.perf_counter() - started)
    say("steps", step)
    (flags / "trained").touch()
    until("exit", lambda: time.sleep(0.05))
    """,
        server,
    )
    wait_until_stored(client, trainee.value("run"), "loss", 1)
    paused = server.pause()
    warned_within(
        trainee.wait_for(UNREACHABLE), paused, figures.setdefault("SIGSTOP to warning", [])
    )
    trainee.flag("stopped")
    trained = trainee.flags / "trained"
    deadline = time.monotonic() + SERVED_WAIT_S
    while not trained.exists():
        assert time.monotonic() < deadline, f"training did not finish:\n{trainee.output()}"
        time.sleep(0.1)
    assert server.paused  # training finished while nothing answered
    ended = float(trainee.value("end_run"))
    figures.setdefault("end_run while the server is known down", []).append(ended)
    assert ended < FLUSH_TIMEOUT_S / 4, f"end_run waited {ended:.1f}s for a server that is down"
    resumed = server.resume()
    assert trainee.wait_for(REACHABLE).at > resumed
    trainee.flag("exit")
    assert trainee.finish() == 0, trainee.output()

    assert_all_landed_once(client, trainee, rounds=True)
    record_property("sigstop_to_warning_s", figures["SIGSTOP to warning"][-1])


OFFLINE = """
    import sys, time

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import mlhooks


    def say(label, value=""):
        print(label, value, flush=True)


    mlhooks.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int)
    run = mlhooks.start_run("offline")
    say("run", run.run_id)
    mlhooks.log_params({"lr": 0.1, "depth": 3})
    for step in range(2000):
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
    LogisticRegression(max_iter=200).fit(X, y)
"""
ENDING = """
    started = time.perf_counter()
    mlhooks.end_run()
    say("end_run", time.perf_counter() - started)
    say("steps", 2000)
    say("done")  # the interpreter's exit begins
"""


def sync(local_dir: Path, server: MlflowServer) -> None:
    """`mlhooks sync` from a shell that names neither the server's experiment nor
    MLflow's retries, twice (the second finds nothing left)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_HTTP_REQUEST_", "MLFLOW_EXPERIMENT_"))
    }
    env["MLFLOW_TRACKING_URI"] = server.uri
    wait_for_services(local_dir)
    command = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(local_dir)]
    for _ in range(2):
        done = subprocess.run(
            command,
            env=env,
            cwd=local_dir.parent,
            capture_output=True,
            text=True,
            timeout=SERVED_WAIT_S,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def exit_wait(trainee: Trainee) -> float:
    """Seconds from the script's last line to its process's end."""
    done = trainee.wait_for("^done", "stdout")
    assert trainee.exited_at is not None
    return trainee.exited_at - done.at


def test_a_server_down_for_the_whole_script_is_synced_later_into_the_right_experiment(
    tmp_path: Path,
    new_mlflow_server: Callable[[], MlflowServer],
    trainees: Callable[..., Trainee],
    figures: dict[str, list[float]],
    record_property: Callable[[str, object], None],
) -> None:
    """Nothing answers on the server's port while a script logs, fits an autologged
    scikit-learn model and ends its run (``MLFLOW_EXPERIMENT_NAME=nightly``). The
    script is warned, its run ends without waiting ``MLHOOKS_FLUSH_TIMEOUT`` and its
    exit without waiting ``MLHOOKS_EXIT_TIMEOUT`` (both 120 s here: it takes well under
    a quarter of either); the spool holds every operation. Once the server is up,
    `mlhooks sync` stores it all once, in the experiment 'nightly', FINISHED."""
    server = new_mlflow_server()  # its port stays closed until start()
    trainee = trainees(OFFLINE + ENDING, server, MLFLOW_EXPERIMENT_NAME="nightly")
    trainee.wait_for(UNREACHABLE)
    assert trainee.finish() == 0, trainee.output()
    ended, exited = float(trainee.value("end_run")), exit_wait(trainee)
    figures.setdefault("end_run while the server is known down", []).append(ended)
    figures.setdefault("exit while the server is down", []).append(exited)
    assert ended < FLUSH_TIMEOUT_S / 4, f"end_run waited {ended:.1f}s for a server that is down"
    assert exited < EXIT_TIMEOUT_S / 4, f"exit waited {exited:.1f}s for a server that is down"

    spooled = [
        op
        for spool in find_spools(tmp_path / "mlhooks-runs" / ".spool")
        for _, op in spool.pending()
    ]
    points = [m for op in spooled for m in getattr(op, "metrics", []) if m[0] == "loss"]
    assert sorted(step for _, _, step, _ in points) == list(range(2000))
    assert {type(op).__name__ for op in spooled} >= {"StartRun", "LogBatch", "LogModel", "EndRun"}

    server.start()
    sync(tmp_path / "mlhooks-runs", server)
    client = MlflowClient(server.uri)
    run = assert_all_landed_once(client, trainee, rounds=False)
    assert client.get_experiment(run.info.experiment_id).name == "nightly"
    assert run.data.params["max_iter"] == "200"  # the fit's own params, in the user's run
    assert "model" in stored_models(client, run.info.run_id)  # a logged model with MLflow 3
    record_property("end_run_while_down_s", ended)
    record_property("exit_while_down_s", exited)


def test_a_run_ending_and_a_process_exiting_while_a_request_hangs_do_not_wait(
    tmp_path: Path,
    new_mlflow_server: Callable[[], MlflowServer],
    trainees: Callable[..., Trainee],
    figures: dict[str, list[float]],
    record_property: Callable[[str, object], None],
) -> None:
    """The server is SIGSTOPped while the script logs, so that the writer's request
    hangs (MLflow's read timeout is 120 s). Once warned, the script ends its run and
    exits while the server is still stopped: neither waits for it (well under a quarter
    of the 120 s ``MLHOOKS_FLUSH_TIMEOUT`` and ``MLHOOKS_EXIT_TIMEOUT``), and what was
    not stored is spooled at once. After SIGCONT, `mlhooks sync` stores everything, each
    point once (the request that hung may land too), and the run is FINISHED."""
    server = new_mlflow_server()
    server.start()
    client = MlflowClient(server.uri)
    trainee = trainees(
        """
    import sys, time
    from pathlib import Path

    import mlhooks

    flags = Path(sys.argv[1])


    def say(label, value=""):
        print(label, value, flush=True)


    run = mlhooks.start_run("hung")
    say("run", run.run_id)
    mlhooks.log_params({"lr": 0.1, "depth": 3})
    step = 0
    while not (flags / "stopped").exists():
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
        step += 1
        time.sleep(0.005)
    for _ in range(1000):
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
        step += 1
    started = time.perf_counter()
    mlhooks.end_run()
    say("end_run", time.perf_counter() - started)
    say("steps", step)
    say("done")
    """,
        server,
    )
    wait_until_stored(client, trainee.value("run"), "loss", 1)
    paused = server.pause()
    warned_within(
        trainee.wait_for(UNREACHABLE), paused, figures.setdefault("SIGSTOP to warning", [])
    )
    trainee.flag("stopped")
    assert trainee.finish() == 0, trainee.output()
    assert server.paused  # the script ended while the server answered nothing
    ended, exited = float(trainee.value("end_run")), exit_wait(trainee)
    figures.setdefault("end_run while the server is known down", []).append(ended)
    figures.setdefault("exit while the server is down", []).append(exited)
    assert ended < FLUSH_TIMEOUT_S / 4, f"end_run waited {ended:.1f}s for a server that is down"
    assert exited < EXIT_TIMEOUT_S / 4, f"exit waited {exited:.1f}s for a server that is down"

    server.resume()
    sync(tmp_path / "mlhooks-runs", server)
    assert_all_landed_once(client, trainee, rounds=False)
    record_property("end_run_while_hung_s", ended)
    record_property("exit_while_hung_s", exited)
