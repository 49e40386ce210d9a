"""Trials side by side: threads (``n_jobs=2``), each trial's run right per thread; and
processes sharing one RDB storage, whose trials are all children of one study run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

import mlhooks
from conftest import Store, ridge_objective
from mlhooks.testing import RecordedRuns
from mlhooks_mlflow import RUN_ID_TAG


def test_two_threads_each_trial_in_its_own_run(autolog: None, store: Store) -> None:
    together = threading.Barrier(2, timeout=60)
    threads: dict[int, str] = {}

    def objective(trial: optuna.Trial) -> float:
        threads[trial.number] = threading.current_thread().name
        if trial.number < 2:
            together.wait()  # the first two trials run at the same time
        return ridge_objective(trial)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=8, n_jobs=2)
    assert threads[0] != threads[1]

    parent = store.study_run()
    children = store.children(parent)
    assert len(store.runs()) == 9
    assert [run.info.run_name for run in children] == [f"trial-{n}" for n in range(8)]
    for run, trial in zip(children, study.trials, strict=True):
        assert run.info.status == "FINISHED"
        assert run.data.metrics["trial_number"] == trial.number  # logged in the objective
        assert float(run.data.params["alpha"]) == 10 ** trial.params["log_alpha"]
        assert run.data.metrics["value"] == trial.value
    best = study.best_trial
    assert parent.data.tags["optuna.best_trial.number"] == str(best.number)
    assert parent.data.metrics["best_value"] == best.value  # MLflow's latest
    points = store.client.get_metric_history(parent.info.run_id, "best_value")
    in_order = [p.step for p in sorted(points, key=lambda p: p.timestamp)]
    assert in_order == sorted(in_order)  # trials finishing out of order: never back
    assert best.number <= points[-1].step


def test_an_earlier_trial_finishing_last_with_the_best_value(
    mlhooks_memory: RecordedRuns,
) -> None:
    """Trial 0 finishes after trial 1 and beats it: the best value never goes back a
    step, and its last point is the best."""
    trial_1_done = threading.Event()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            assert trial_1_done.wait(60)
            return 1.0
        return 5.0 if trial.number == 1 else 10.0

    def note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 1:
            trial_1_done.set()

    mlhooks.autolog()
    try:
        study = optuna.create_study(study_name="late")
        study.optimize(objective, n_trials=4, n_jobs=2, callbacks=[note])
    finally:
        mlhooks.autolog(disable=True)

    parent = mlhooks_memory.run_named("late")
    points = [(p.step, p.value) for p in parent.history("best_value")]
    assert points == [(1, 5.0), (1, 1.0)]  # in the order logged
    assert parent.tags["optuna.best_trial.number"] == "0"
    trial_0 = mlhooks_memory.run_named("trial-0")
    assert parent.tags["optuna.best_trial.run_id"] == trial_0.info.run_id


class _SlowToReport(optuna.storages.InMemoryStorage):
    """Trial 1's result is stored, then its callbacks wait until trial 0's have run."""

    def __init__(self) -> None:
        super().__init__()
        self.trial_1_stored = threading.Event()
        self.trial_0_reported = threading.Event()

    def set_trial_state_values(
        self, trial_id: int, state: optuna.trial.TrialState, values: Sequence[float] | None = None
    ) -> bool:
        stored = super().set_trial_state_values(trial_id, state, values)
        if self.get_trial(trial_id).number == 1 and state.is_finished():
            self.trial_1_stored.set()
            assert self.trial_0_reported.wait(60)
        return stored


def test_the_best_trial_stored_before_a_worse_trial_reports_is_still_tagged(
    mlhooks_memory: RecordedRuns,
) -> None:
    """Trial 1 (the best) is stored, trial 0 (worse) reports first and sees trial 1
    as the study's best, then trial 1 reports: trial 1 is tagged the best."""
    storage = _SlowToReport()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            assert storage.trial_1_stored.wait(60)
            return 1.0
        return 5.0

    def note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 0:
            storage.trial_0_reported.set()

    mlhooks.autolog()
    try:
        study = optuna.create_study(study_name="tie", storage=storage, direction="maximize")
        study.optimize(objective, n_trials=2, n_jobs=2, callbacks=[note])
    finally:
        mlhooks.autolog(disable=True)

    parent = mlhooks_memory.run_named("tie")
    assert parent.tags["optuna.best_trial.number"] == "1"
    trial_1 = mlhooks_memory.run_named("trial-1")
    assert parent.tags["optuna.best_trial.run_id"] == trial_1.info.run_id
    assert [p.value for p in parent.history("best_value")] == [5.0]


WORKER = """
import pathlib, sys, time
import optuna
import mlhooks

optuna.logging.set_verbosity(optuna.logging.ERROR)
mlhooks.autolog()
study = optuna.load_study(study_name="shared", storage=sys.argv[1])
pathlib.Path(f"ready-{sys.argv[2]}").touch()
while not pathlib.Path("go").exists():
    time.sleep(0.005)

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    trial.report(x * x + 1, 0)
    return x * x

study.optimize(objective, n_trials=4)
"""


def test_processes_sharing_a_storage_share_the_studys_run(
    tmp_path: Path, tracking_uri: str, store: Store
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"), "MLHOOKS_STRICT": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), storage, str(i)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready-{i}").exists() for i in range(3)):
        assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    (tmp_path / "go").touch()  # all three claim the study's run at once
    for worker in workers:
        _, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors[-3000:]
        assert "MlhooksWarning" not in errors, errors[-3000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 12
    parent = store.study_run()  # one run at the top
    assert parent.data.tags[RUN_ID_TAG] == study.user_attrs["mlhooks.run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {
        "sampler": "TPESampler",
        "pruner": "MedianPruner",
        "direction": "minimize",
    }
    children = store.children(parent)
    assert [run.info.run_name for run in children] == [f"trial-{n}" for n in range(12)]
    for run, trial in zip(children, study.trials, strict=True):
        assert run.data.params == {"x": str(trial.params["x"])}
        assert run.data.metrics["value"] == trial.value
        assert store.history(run, "intermediate_value") == list(trial.intermediate_values.items())
    best = study.best_trial
    assert parent.data.tags["optuna.best_trial.number"] == str(best.number)
    assert best.value in [value for _, value in store.history(parent, "best_value")]
    assert mlhooks.flush(10)


SLOW_TO_STORE = """
import pathlib, sys, time
import optuna
import mlhooks
from mlhooks.backends.base import Bundle, LogBatch
from mlhooks_mlflow import MlflowBackend

class SlowToStoreTheBest(MlflowBackend):
    \"\"\"The store of the first process: its best takes 10 s to land.\"\"\"

    out_of_process = False  # this class, not the MLflow backend rebuilt in a service

    def apply(self, op):
        ops = op.ops if isinstance(op, Bundle) else [op]
        if any(isinstance(o, LogBatch) and "optuna.best_trial.number" in o.tags for o in ops):
            time.sleep(10)
        super().apply(op)

storage, role = sys.argv[1], sys.argv[2]
optuna.logging.set_verbosity(optuna.logging.ERROR)
mlhooks.autolog(backends=[SlowToStoreTheBest()] if role == "first" else None)
study = optuna.load_study(study_name="shared", storage=storage)

def objective(trial):
    trial.suggest_float("x", 0, 1)
    if role == "first":
        return 5.0
    while "mlhooks.best_step" not in study.user_attrs:
        time.sleep(0.005)  # the first process logged its best and is storing it: beat it
    return 1.0

study.optimize(objective, n_trials=1)
"""


def test_a_process_storing_an_older_best_late_does_not_overwrite_a_newer_one(
    tmp_path: Path, tracking_uri: str, store: Store
) -> None:
    """The first process's best takes 10 s to be stored; a second process's better
    trial finishes meanwhile: the second process's trial stays tagged the best."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(SLOW_TO_STORE))
    env = {
        **os.environ,
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"),
        "MLHOOKS_STRICT": "1",
        "MLHOOKS_EXIT_TIMEOUT": "60",  # the first process waits for its slow store
    }
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), storage, role],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("first", "second")
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors[-3000:]
        assert "MlhooksWarning" not in errors, errors[-3000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    best = study.best_trial  # the second process's (either may have taken number 0)
    assert sorted(trial.value for trial in study.trials) == [1.0, 5.0] and best.value == 1.0
    parent = store.study_run()
    assert parent.data.tags["optuna.best_trial.number"] == str(best.number)
    assert parent.data.metrics["best_value"] == 1.0  # MLflow's latest: never a step back
    # In the order they were logged (the second process's may share the first's step,
    # when it took the lower trial number: MLflow's latest is then the later point).
    points = store.client.get_metric_history(parent.info.run_id, "best_value")
    logged = sorted(points, key=lambda m: (m.step, m.timestamp))
    assert [m.value for m in logged] == [5.0, 1.0]
    assert study.user_attrs["mlhooks.best_step"] == 1
