"""A process killed before its exit sequence loses at most the journal's interval
(issue 13, items 4 and 5): its journal holds everything reported earlier, and
``mlhooks sync`` or the next process that tracks in the same place delivers it, exactly
once, and ends the runs it left open KILLED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Store, finish_dead_journals

SETTLE = 1.5
"""Seconds a script waits before its death: three journal intervals (0.5 s)."""

KILL_MID_FIT = f"""
    import os, signal, time
    import numpy as np
    import xgboost
    import mlhooks

    mlhooks.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=200)
    dtrain = xgboost.DMatrix(X, label=y)

    class Die(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if epoch == 60:
                time.sleep({SETTLE})  # rounds 0..60 are older than the journal interval
            if epoch == 70:
                os.{{how}}
            return False

    xgboost.train({{{{"max_depth": 2, "eta": 0.1}}}}, dtrain, num_boost_round=500,
                  evals=[(dtrain, "train")], callbacks=[Die()])
"""

HOW = {"SIGKILL": "kill(os.getpid(), signal.SIGKILL)", "os._exit": "_exit(0)"}


def sync(store: Store, *extra: str) -> subprocess.CompletedProcess[str]:
    """``mlhooks sync`` in a fresh process, as a user runs it."""
    return cli(store, "sync", *extra)


def cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    """``mlhooks <args>`` in a fresh process, with the store's environment."""
    return store.cli(*args)


def journals(store: Store) -> list[Path]:
    return sorted((store.root / ".journal").glob("*.journal"))


def test_sigkill_in_a_fit_loses_at_most_the_last_interval(store: Store) -> None:
    """XGBoost is SIGKILLed at round 70, 1.5 s after round 60: after ``mlhooks sync``
    every round up to 60 is stored, each once, with the params, and the run is
    KILLED. (Before the journal, up to 10 s of rounds were lost during fits.)"""
    result = store.script(KILL_MID_FIT.format(how=HOW["SIGKILL"]))
    assert result.returncode == -9, result.stderr
    if not store.in_service:  # else the dead process's service finishes its journal
        assert journals(store), "the killed process left its journal"
        told = cli(store, "doctor", "--no-probe")
        assert "1 journal(s) of processes that died" in told.stdout
    finish_dead_journals(store.root, store.env)
    assert not journals(store)
    document = json.loads(cli(store, "doctor", "--no-probe", "--format", "json").stdout)
    assert document["waiting"]["dead_journals"] == 0

    (run,) = store.all_runs()
    assert run.status == "KILLED"
    assert run.params["max_depth"] == "2"
    assert not (store.root / ".staging").exists(), "the dead process's snapshots stay"
    (key,) = [k for k in run.metrics if k.startswith("train")]
    steps = [step for step, _ in run.metrics[key]]
    assert len(steps) == len(set(steps)), "a round stored twice"
    assert set(range(61)) <= set(steps)


def test_os_exit_is_recovered_by_the_next_process(store: Store) -> None:
    """A script leaves by ``os._exit(0)`` with a run open: the next script that tracks
    in the same place delivers what the first one left, on a background thread, says
    so once, and ends the dead process's run KILLED."""
    first = store.script(
        f"""
        import os, time
        import mlhooks

        mlhooks.start_run("abandoned")
        mlhooks.log_param("lr", 0.1)
        for step in range(1000):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        time.sleep({SETTLE})
        os._exit(0)
        """
    )
    assert first.returncode == 0, first.stderr
    if store.in_service:  # the dead process's service finished its journal itself
        finish_dead_journals(store.root, store.env)
        run = store.run("abandoned")
        assert (run.status, run.params) == ("KILLED", {"lr": "0.1"})
        assert [s for s, _ in run.metrics["loss"]] == list(range(1000))
        return
    assert journals(store)

    second = store.script(
        """
        import time
        import mlhooks
        from mlhooks.delivery import recovery

        with mlhooks.start_run("next"):
            mlhooks.log_metric("acc", 0.9)
            deadline = time.monotonic() + 120
            while not recovery.told and time.monotonic() < deadline:
                time.sleep(0.1)  # the dead process's journal is delivered in the background
        """,
        MLHOOKS_STRICT="0",
    )
    assert second.returncode == 0, second.stderr
    assert "ended without its exit sequence" in second.stderr
    assert second.stderr.count("ended without its exit sequence") == 1
    runs = store.runs()
    assert runs["abandoned"].status == "KILLED"
    assert runs["abandoned"].params == {"lr": "0.1"}
    assert [s for s, _ in runs["abandoned"].metrics["loss"]] == list(range(1000))
    assert runs["next"].status == "FINISHED"
    assert not journals(store)


def test_two_syncs_at_once_store_each_point_once(store: Store) -> None:
    """Two ``mlhooks sync`` started together over one dead process's journal: one of
    them delivers it (the journal is locked while it does), and nothing is stored
    twice."""
    result = store.script(KILL_MID_FIT.format(how=HOW["os._exit"]))
    assert result.returncode == 0, result.stderr
    if store.in_service:  # the dead process's service finished its journal: no sync
        finish_dead_journals(store.root, store.env)
        assert_each_round_once(store)
        return
    command = [sys.executable, "-m", "mlhooks", "sync"]
    env = {**os.environ, **store.env}
    both = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    assert sum(out.count(b"ended without its exit sequence") for out, _ in outputs) == 1
    assert_each_round_once(store)
    assert sync(store).stdout.startswith("nothing to sync")


def assert_each_round_once(store: Store) -> None:
    """The killed XGBoost run holds rounds 0 to 60 (older than the journal's interval
    at the death), each once."""
    (run,) = store.all_runs()
    (key,) = [k for k in run.metrics if k.startswith("train")]
    steps = [step for step, _ in run.metrics[key]]
    assert len(steps) == len(set(steps))
    assert set(range(61)) <= set(steps)


def test_a_forked_child_killed_keeps_its_points_and_not_its_parents_run(
    store: Store,
) -> None:
    """A child forked in the parent's run logs and dies by ``os._exit``: ``mlhooks
    sync`` stores the child's points (its own journal), and the parent's run, which the
    child never started, ends as the parent ended it: FINISHED."""
    result = store.script(
        f"""
        import os, time
        import mlhooks

        with mlhooks.start_run("parent"):
            mlhooks.log_metric("parent_loss", 1.0, step=0)
            pid = os.fork()
            if pid == 0:
                for step in range(300):
                    mlhooks.log_metric("child_loss", float(step), step=step)
                time.sleep({SETTLE})
                os._exit(0)
            os.waitpid(pid, 0)
            mlhooks.log_metric("parent_loss", 2.0, step=1)
        """
    )
    assert result.returncode == 0, result.stderr
    assert sync(store).returncode == 0
    run = store.run("parent")
    assert run.status == "FINISHED"
    assert [s for s, _ in run.metrics["child_loss"]] == list(range(300))
    assert [s for s, _ in run.metrics["parent_loss"]] == [0, 1]
    assert not journals(store)


def test_a_journal_that_cannot_be_written_warns_once_and_loses_nothing(
    store: Store,
) -> None:
    """The journal's folder cannot be made (a file stands in its place): one warning,
    and a normal run stores everything, as without a journal."""
    store.root.mkdir(parents=True)
    (store.root / ".journal").write_text("not a folder")
    result = store.script(
        """
        import mlhooks

        with mlhooks.start_run("no-journal"):
            for step in range(500):
                mlhooks.log_metric("loss", float(step), step=step)
        """,
        MLHOOKS_STRICT="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("cannot write the journal") == 1
    run = store.run("no-journal")
    assert run.status == "FINISHED"
    assert [s for s, _ in run.metrics["loss"]] == list(range(500))


def test_a_normal_exit_leaves_no_journal(store: Store, tmp_path: Path) -> None:
    """Everything delivered: the journal goes at exit, and so does its folder."""
    result = store.script(
        """
        import mlhooks

        with mlhooks.start_run("clean"):
            mlhooks.log_metric("loss", 1.0)
        """
    )
    assert result.returncode == 0, result.stderr
    assert store.run("clean").status == "FINISHED"
    assert not (store.root / ".journal").exists()


def test_without_the_journal_nothing_is_journaled(store: Store) -> None:
    """``MLHOOKS_JOURNAL=0`` turns it off: no journal is written (and a killed process
    loses what its writer had not stored, as before)."""
    result = store.script(
        """
        import os, time
        import mlhooks

        mlhooks.start_run("unjournaled")
        mlhooks.log_metric("loss", 1.0)
        time.sleep(1.0)
        os._exit(0)
        """,
        MLHOOKS_JOURNAL="0",
    )
    assert result.returncode == 0, result.stderr
    assert not (store.root / ".journal").exists()


KILL_IN_A_BUNDLE = """
    # Installed for the script and its writer service: SIGKILL the process that writes
    # the MLflow store in the middle of the first bundle it stores, once.
    import os, signal
    from pathlib import Path

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    MARK = Path(os.environ["BUNDLE_KILL_MARK"])
    WHEN = os.environ["BUNDLE_KILL_WHEN"]
    committed = []

    def die():
        if not MARK.exists():
            MARK.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    @event.listens_for(Engine, "before_cursor_execute")
    def executed(connection, cursor, statement, *args):
        if committed:  # the params' transaction is committed: the datasets' is next
            die()
        if statement.startswith("INSERT INTO inputs") and WHEN == "within":
            connection.info["bundle_kill"] = True

    @event.listens_for(Engine, "commit")
    def commit(connection):
        if connection.info.pop("bundle_kill", False):
            die()  # before the datasets' transaction is committed
        if WHEN == "between" and "INSERT INTO params" in str(connection.info.get("last")):
            committed.append(True)
        if connection.info.pop("run_inserted", False):
            committed.append(True)  # the run's creation is committed: die next

    @event.listens_for(Engine, "after_cursor_execute")
    def remembered(connection, cursor, statement, *args):
        connection.info["last"] = statement
        if WHEN == "created" and statement.startswith("INSERT INTO runs"):
            connection.info["run_inserted"] = True
"""


@pytest.mark.parametrize("when", ["created", "between", "within"])
def test_a_writer_killed_inside_a_bundle_stores_it_once_later(
    when: str, tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """The MLflow backend stores a fit's start, tags, params, datasets and file as one
    bundle, in three writes. The process writing the store (the script, or its writer
    service) is SIGKILLed just after the run's creation was committed (before the
    writer learned its id: the first service creates a new run without looking for it,
    the next one must look), between two writes (after the params, before the
    datasets) or within one (the datasets' transaction torn): what comes after it
    (``mlhooks sync``, or the next service) stores the bundle again from the journal,
    and there is one run, with each param, tag, dataset, metric point and its logged
    model once."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(KILL_IN_A_BUNDLE))
    mark = tmp_path / "killed"
    root = tmp_path / "mlhooks-runs"
    store = Store("mlflow", {"MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_BACKENDS": "mlflow",
                             "MLFLOW_TRACKING_URI": mlflow_tracking_uri}, root)  # fmt: skip
    result = store.script(
        """
        import numpy as np
        from sklearn.linear_model import Ridge
        import mlhooks

        mlhooks.autolog()
        rng = np.random.default_rng(0)
        X = rng.normal(size=(100, 3))
        Ridge(alpha=0.5).fit(X, X @ np.array([1.0, 2.0, 3.0]))
        assert mlhooks.flush(120)
        print("stored")
        """,
        PYTHONPATH=os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
        BUNDLE_KILL_MARK=str(mark),
        BUNDLE_KILL_WHEN=when,
        MLHOOKS_STRICT="0",  # the service's death is a warning
    )
    assert mark.exists(), f"the writer was not killed: {result.stderr}"
    if store.in_service:  # the service died; the script's flush waited for the next one
        assert result.returncode == 0 and "stored" in result.stdout, result.stderr
    else:  # the script died in its exit's flush, its run's end journaled
        assert result.returncode == -9, result.stderr
        synced = sync(store)
        assert synced.returncode == 0 and "stored to mlflow" in synced.stdout, synced.stderr
    assert not journals(store)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.5" and len(run.data.params) >= 8
    assert any(key.startswith("mlhooks.context") for key in run.data.tags)
    assert len(run.inputs.dataset_inputs) == 2
    for key in run.data.metrics:
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    models = client.search_logged_models(
        experiments, filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [m.status for m in models] == ["READY"]
