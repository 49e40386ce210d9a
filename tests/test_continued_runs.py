"""A stored run continued by id (a resumed training); the writer's per-backend pace."""

from __future__ import annotations

import pytest

import mlhooks
from mlhooks import DatasetInfo, RunStatus
from mlhooks.backends.memory import MemoryBackend
from mlhooks.plugin import FitSession
from mlhooks.testing import RecordedRuns, wait_until


def test_a_stored_run_is_continued_by_its_id(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("first") as run:
        mlhooks.log_param("lr", 0.1)
        mlhooks.log_metric("loss", 1.0, step=0)
    with mlhooks.start_run("again", run_id=run.run_id) as again:
        assert again.run_id == run.run_id
        mlhooks.log_metric("loss", 0.5, step=1)

    stored = mlhooks_memory.only_run()
    assert [(p.step, p.value) for p in stored.history("loss")] == [(0, 1.0), (1, 0.5)]
    assert stored.params == {"lr": "0.1"}
    assert stored.info.status is RunStatus.FINISHED


def test_an_open_run_cannot_be_started_again(mlhooks_memory: RecordedRuns) -> None:
    with (
        mlhooks.start_run("first") as run,
        pytest.raises(ValueError, match="still open"),
    ):
        mlhooks.start_run("again", run_id=run.run_id, nested=True)


def test_a_fit_session_continues_a_run_and_reports_a_dataset_info(
    mlhooks_memory: RecordedRuns,
) -> None:
    with mlhooks.start_run("first") as run:
        pass
    session = FitSession("fakefw", "resumed", run_id=run.run_id)
    session.start()
    info = DatasetInfo(name="train", digest="abc123", shape=(10,), kind="torch:TensorDataset")
    session.log_dataset(info)
    session.end()

    stored = mlhooks_memory.only_run()
    assert stored.datasets == [info]
    assert stored.info.status is RunStatus.FINISHED


class SlowPaced(MemoryBackend):
    """A backend that asks the writer to gather points for an hour between writes."""

    write_interval = 3600.0
    max_batch_size = 10


def test_a_slow_paced_backend_still_gets_flushes_and_full_batches_at_once() -> None:
    backend = SlowPaced()
    with mlhooks.start_run("paced", backends=[backend]) as run:
        mlhooks.log_metric("warmup", 0.0)
        assert mlhooks.flush(30)  # a flush does not wait for the interval
        for step in range(10):  # one full batch wakes the writer
            mlhooks.log_metric("loss", float(step), step=step)
        wait_until(lambda: len(backend.runs[run.run_id].metrics.get("loss", [])) == 10)
    mlhooks.flush(30)
    assert backend.runs[run.run_id].info.status is RunStatus.FINISHED
