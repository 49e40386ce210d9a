"""Runs: the per-thread stack, nesting, statuses, managed runs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import mlhooks
from mlhooks import RunStatus
from mlhooks.testing import RecordedRuns


def test_start_run_as_context_manager_and_plain_call(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("ctx", description="first try", tags={"team": "ml"}) as run:
        assert mlhooks.active_run() is run.info
    assert mlhooks.active_run() is None
    plain = mlhooks.start_run("plain")
    assert mlhooks.active_run() is plain.info
    mlhooks.end_run()
    runs = {r.info.name: r for r in mlhooks_memory.runs.values()}
    assert runs["ctx"].info.status is RunStatus.FINISHED
    assert runs["ctx"].info.description == "first try"
    assert runs["ctx"].info.tags == {"team": "ml"}
    assert runs["plain"].info.status is RunStatus.FINISHED
    assert runs["ctx"].info.end_time is not None


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError("x"), RunStatus.FAILED), (KeyboardInterrupt(), RunStatus.KILLED)],
)
def test_the_block_status_follows_the_exception(
    mlhooks_memory: RecordedRuns, error: BaseException, status: RunStatus
) -> None:
    with pytest.raises(type(error)) as raised, mlhooks.start_run("broken"):
        raise error
    assert raised.value is error
    assert mlhooks_memory.only_run().info.status is status


def test_end_run_with_an_explicit_status(mlhooks_memory: RecordedRuns) -> None:
    mlhooks.start_run("killed")
    mlhooks.end_run("KILLED")
    assert mlhooks_memory.only_run().info.status is RunStatus.KILLED
    mlhooks.end_run()  # nothing active: nothing happens


def test_nested_runs_carry_their_parent(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("search") as parent:
        for i in range(3):
            with mlhooks.start_run(f"candidate-{i}", nested=True) as child:
                assert child.info.parent_id == parent.run_id
                mlhooks.log_param("i", i)
        assert mlhooks.active_run() is parent.info
    runs = {r.info.name: r for r in mlhooks_memory.runs.values()}
    assert runs["search"].info.parent_id is None
    assert {runs[f"candidate-{i}"].info.parent_id for i in range(3)} == {parent.run_id}
    assert runs["candidate-2"].params == {"i": "2"}


def test_a_second_run_needs_nested(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("outer") as outer:
        with pytest.raises(ValueError, match=f"{outer.run_id}.*nested=True"):
            mlhooks.start_run("inner")


def test_ending_a_parent_ends_its_open_children(mlhooks_memory: RecordedRuns) -> None:
    parent = mlhooks.start_run("parent")
    mlhooks.start_run("child", nested=True)
    mlhooks.end_run(run=parent.info)
    assert mlhooks.active_run() is None
    assert {r.info.status for r in mlhooks_memory.runs.values()} == {RunStatus.FINISHED}


def test_the_active_run_is_per_thread(mlhooks_memory: RecordedRuns) -> None:
    seen: dict[str, Any] = {}

    def worker() -> None:
        seen["before"] = mlhooks.active_run()
        with mlhooks.start_run("thread-run") as run:
            seen["inside"] = mlhooks.active_run() is run.info

    with mlhooks.start_run("main-run") as main:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert mlhooks.active_run() is main.info
    assert seen == {"before": None, "inside": True}
    assert {r.info.parent_id for r in mlhooks_memory.runs.values()} == {None}


def test_logging_without_a_run_starts_one(mlhooks_memory: RecordedRuns) -> None:
    mlhooks.log_metric("loss", 0.5)
    run = mlhooks.active_run()
    assert run is not None and not run.managed
    mlhooks.end_run()
    assert mlhooks_memory.only_run().history("loss")[0].value == 0.5


def test_runs_write_to_the_backends_they_name(mlhooks_memory: RecordedRuns) -> None:
    other = mlhooks.backends.memory.MemoryBackend()
    with mlhooks.start_run("elsewhere", backends=[other]) as run:
        with mlhooks.start_run("child", nested=True):
            mlhooks.log_metric("x", 1.0)
    mlhooks.flush()
    assert mlhooks_memory.backend.runs == {}
    assert run.run_id in other.runs and len(other.runs) == 2


def test_an_unknown_backend_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'nope'.*available backends: local"):
        mlhooks.start_run("x", backends=["nope"])
    assert mlhooks.active_run() is None


def test_a_run_writes_to_several_backends(mlhooks_memory: RecordedRuns) -> None:
    first, second = mlhooks.backends.memory.MemoryBackend(), mlhooks.backend("memory")
    with mlhooks.start_run("both", backends=[first, "memory"]) as run:
        mlhooks.log_metrics({"a": 1.0, "b": 2.0}, step=3)
    mlhooks.flush()
    for backend in (first, second):
        assert backend.run(run.run_id).latest() == {"a": 1.0, "b": 2.0}
