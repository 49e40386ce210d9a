"""Runs an integration opens beside the user's: children that do not become the active
run, sessions logging into a given run, and reports that arrive after a run ended."""

from __future__ import annotations

import threading
from pathlib import Path

import mlhooks
from mlhooks import RunStatus
from mlhooks.plugin import FitSession, open_run
from mlhooks.testing import RecordedRuns


def test_a_run_started_without_activation_leaves_the_active_run(
    mlhooks_memory: RecordedRuns,
) -> None:
    with mlhooks.start_run("user") as user:
        detached = open_run("loop", managed=True, activate=False)
        assert mlhooks.active_run() is user.info
        assert detached.info.parent_id is None
        child = open_run("child", parent=detached.info, activate=False)
        assert child.info.parent_id == detached.run_id
        mlhooks.log_param("where", "user")  # still goes to the user's run
        mlhooks.end_run(run=detached.info)  # ends its child too
    runs = {r.info.name: r for r in mlhooks_memory.runs.values()}
    assert runs["user"].params == {"where": "user"}
    assert runs["loop"].info.status is RunStatus.FINISHED
    assert runs["child"].info.status is RunStatus.FINISHED
    assert runs["child"].info.parent_id == detached.run_id


def test_session_children_are_nested_runs_of_the_session(mlhooks_memory: RecordedRuns) -> None:
    session = FitSession("fw", "search", params={"cv": 3})
    session.start()
    assert session.fit is not None
    for i in range(3):
        child = session.child(f"candidate-{i}", params={"alpha": i})
        child.log_metrics({"score": i / 10})
        child.end()
        assert mlhooks.active_run() is session.fit.run
    session.end()
    runs = {r.info.name: r for r in mlhooks_memory.runs.values()}
    assert runs["search"].params == {"cv": "3"}
    for i in range(3):
        run = runs[f"candidate-{i}"]
        assert run.info.parent_id == runs["search"].info.run_id
        assert run.params == {"alpha": str(i)}
        assert run.latest() == {"score": i / 10}
        assert run.info.status is RunStatus.FINISHED


def test_a_session_given_a_run_logs_there_and_leaves_it_open(
    mlhooks_memory: RecordedRuns,
) -> None:
    loop = open_run("loop", managed=True, activate=False)
    for step in range(3):
        session = FitSession("fw", "partial", run=loop.info, params={"lr": 0.1})
        session.start()
        session.log_metrics({"loss": 1 / (step + 1)}, step=step)
        session.end()
        assert loop.info.status is RunStatus.RUNNING
    mlhooks.end_run(run=loop.info)
    run = mlhooks_memory.only_run()
    assert [p.step for p in run.history("loss")] == [0, 1, 2]
    assert run.params == {"lr": "0.1"}
    assert run.info.status is RunStatus.FINISHED


def test_reports_after_the_run_ended_are_stored(
    mlhooks_memory: RecordedRuns, tmp_path: Path
) -> None:
    session = FitSession("fw", "model")
    session.start()
    session.end()
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"png")
    worker = threading.Thread(target=session.log_artifact, args=(str(plot), "plots"))
    worker.start()
    worker.join()
    session.log_metrics({"accuracy_score_X_test": 0.9})
    run = mlhooks_memory.only_run()
    assert run.info.status is RunStatus.FINISHED
    assert run.latest() == {"accuracy_score_X_test": 0.9}
    assert run.artifacts == ["plots/plot.png"]
