"""The writer service holds its backends' start back while the first fit trains
(issue 14, ``mlhooks.delivery.service_gate``): what the process logs meanwhile waits in
its journal. A death, a flush inside the fit, the exit and a service killed while held
still get every point stored, once. Here the hold lasts as long as the fit
(``MLHOOKS_SERVICE_DEFER=600``); each script prints what its service had imported
while it held back."""

from __future__ import annotations

import pytest

from conftest import SERVICE, Store, finish_dead_journals

HELD = {"MLHOOKS_SERVICE_DEFER": "600"}

FIT = """
    import os, signal, time
    import numpy as np
    import xgboost
    import mlhooks
    from mlhooks.delivery.service_client import client

    mlhooks.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    dtrain = xgboost.DMatrix(X, label=X @ np.array([1.0, -2.0, 0.5, 0.0]))

    class AtRound60(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if epoch == 60:
                time.sleep(1.5)  # rounds 0..60 are journaled
                print("HELD", client.describe()["warmed"], flush=True)
                {at_60}
            return False

    xgboost.train({{"max_depth": 2}}, dtrain, num_boost_round=100,
                  evals=[(dtrain, "train")], callbacks=[AtRound60()])
"""


UNTIL_WARMED = (
    "deadline = time.monotonic() + 120\n"
    "                while not client.describe()['warmed'] and time.monotonic() < deadline:\n"
    "                    time.sleep(0.05)\n"
    "                print('WARMED', client.describe()['warmed'], flush=True)"
)
"""At round 60: wait until the service imported MLflow (while the fit trains)."""


def _rounds(store: Store) -> list[int]:
    (run,) = store.all_runs()
    (key,) = [k for k in run.metrics if k.startswith("train")]
    return [step for step, _ in run.metrics[key]]


pytestmark = [
    pytest.mark.parametrize("store", ["mlflow"], indirect=True),  # the service's backend
    pytest.mark.skipif(not SERVICE, reason="the gate is the writer service's"),
]


@pytest.fixture
def service_store(store: Store) -> Store:
    assert store.in_service
    return store


def test_a_process_killed_while_its_service_holds_back_loses_nothing(
    service_store: Store,
) -> None:
    """SIGKILLed at round 60 while the service has not started its backend: the service
    starts it then, stores rounds 0..60 once and ends the run KILLED."""
    store = service_store
    at_60 = "os.kill(os.getpid(), signal.SIGKILL)"
    result = store.script(FIT.format(at_60=at_60), **HELD)
    assert result.returncode == -9, result.stderr
    assert "HELD []" in result.stdout, result.stdout  # nothing started before the death
    finish_dead_journals(store.root, store.env)
    (run,) = store.all_runs()
    assert run.status == "KILLED"
    steps = _rounds(store)
    assert sorted(steps) == list(range(61)), steps


DOCTOR = (
    "import subprocess, sys; doctor = subprocess.run([sys.executable, '-m', 'mlhooks', "
    "'doctor'], capture_output=True, text=True).stdout; "
    "print('DOCTOR', [line for line in doctor.splitlines() if 'at work' in line], flush=True)"
)
"""``mlhooks doctor``'s line about the writer service, printed by the script."""


def test_a_flush_inside_the_fit_starts_the_service(service_store: Store) -> None:
    """``mlhooks.flush()`` at round 60 waits for what was logged: the service starts
    its backend for it, and the rest of the fit is stored as usual, each round once.
    ``mlhooks doctor`` says the service holds back before the flush, and not after."""
    store = service_store
    flushed = 'print("FLUSHED", mlhooks.flush(120), client.describe()["warmed"], flush=True)'
    at_60 = f"{DOCTOR}; {flushed}; {DOCTOR}"
    result = store.script(FIT.format(at_60=at_60), **HELD)
    assert result.returncode == 0, result.stderr
    assert "HELD []" in result.stdout, result.stdout
    assert "FLUSHED True" in result.stdout, result.stdout
    before, after = [line for line in result.stdout.splitlines() if line.startswith("DOCTOR")]
    assert "at work" in before and "held back while its process's first fit trains" in before
    assert "at work" in after and "held back" not in after
    (run,) = store.all_runs()
    assert run.status == "FINISHED"
    assert sorted(_rounds(store)) == list(range(100))


def test_the_exit_starts_a_held_service_which_stores_everything(service_store: Store) -> None:
    """The script ends right after its only fit: its exit hands the journal over to
    the service, which starts its backend then and stores the whole run."""
    store = service_store
    result = store.script(FIT.format(at_60="pass"), **HELD)
    assert result.returncode == 0, result.stderr
    assert "HELD []" in result.stdout, result.stdout
    (run,) = store.all_runs()
    assert run.status == "FINISHED"
    assert sorted(_rounds(store)) == list(range(100))


def test_a_service_killed_while_it_holds_back_is_replaced_and_nothing_is_lost(
    service_store: Store,
) -> None:
    """The service is SIGKILLed at round 60, still holding back: the process notices,
    starts another (warned once) and that one stores every round once."""
    store = service_store
    at_60 = "client.kill_for_tests(); print('FLUSHED', mlhooks.flush(120), flush=True)"
    result = store.script(FIT.format(at_60=at_60), **HELD, MLHOOKS_STRICT="0")
    assert result.returncode == 0, result.stderr
    assert "HELD []" in result.stdout and "FLUSHED True" in result.stdout, result.stdout
    assert result.stderr.count("writer service") >= 1, result.stderr
    (run,) = store.all_runs()
    assert run.status == "FINISHED"
    assert sorted(_rounds(store)) == list(range(100))


def test_the_gate_holds_no_longer_than_mlhooks_service_defer(service_store: Store) -> None:
    """With ``MLHOOKS_SERVICE_DEFER=0.5``, a fit longer than that has its service started
    while it trains (the hold is bounded; points of a long fit show up live)."""
    store = service_store
    result = store.script(FIT.format(at_60=UNTIL_WARMED), MLHOOKS_SERVICE_DEFER="0.5")
    assert result.returncode == 0, result.stderr
    assert "WARMED ['mlflow']" in result.stdout, result.stdout + result.stderr
    assert sorted(_rounds(store)) == list(range(100))


def test_a_process_that_asks_has_its_service_start_at_once(service_store: Store) -> None:
    """``mlhooks.plugin.start_writer_service_now()`` (a Ray Tune worker's trial calls
    it) ends the hold: the service starts while the fit trains."""
    store = service_store
    ask = "import mlhooks.plugin\n    mlhooks.plugin.start_writer_service_now()\n"
    script = FIT.format(at_60=UNTIL_WARMED)
    script = script.replace("mlhooks.autolog()\n", f"mlhooks.autolog()\n    {ask}")
    assert "start_writer_service_now" in script
    result = store.script(script, **HELD)
    assert result.returncode == 0, result.stderr
    assert "WARMED ['mlflow']" in result.stdout, result.stdout + result.stderr
    assert sorted(_rounds(store)) == list(range(100))
