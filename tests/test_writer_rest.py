"""The writer rests in proportion to how long it was busy: a backend whose calls are
expensive in Python (MLflow's) gets fewer, larger batches instead of a writer thread
that competes with training for the GIL; a flush still gets everything at once."""

from __future__ import annotations

import time
from pathlib import Path

import mlhooks
from mlhooks.backends import LogBatch
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery.lanes import Lane, RetryPolicy


class CostlyBackend(MemoryBackend):
    """Each call costs 20 ms, as an MLflow ``log_batch`` into sqlite can."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def log_batch(self, batch: LogBatch) -> None:
        self.calls += 1
        time.sleep(0.02)
        super().log_batch(batch)


def test_a_costly_backend_gets_fewer_larger_batches_and_a_flush_is_not_delayed(
    tmp_path: Path,
) -> None:
    backend = CostlyBackend()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(delays=()))
    lane.max_interval = 600  # rests could be long: only a flush may cut them short
    lane.put(mlhooks.backends.StartRun(mlhooks.RunInfo(run_id="r1", name="costly")))
    for step in range(40):  # a point every 10 ms for 0.4 s: at least 0.4 s of putting
        lane.put(("r1", "loss", float(step), step, 0))
        time.sleep(0.01)
    # At most one batch every 9 x 20 ms while putting (every 50 ms without the rest);
    # sleeps only stretch under load, which gives fewer batches, never more.
    assert backend.calls <= 3
    assert lane.flush(60)  # without the wake-up, the writer would rest for minutes
    assert [m.step for m in backend.run("r1").history("loss")] == list(range(40))


def test_the_writer_yields_while_a_fit_trains_and_writes_when_it_ends(tmp_path: Path) -> None:
    from mlhooks.core import activity
    from mlhooks.testing import wait_until

    backend = CostlyBackend()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(delays=()))
    activity.fit_started()
    try:
        lane.put(mlhooks.backends.StartRun(mlhooks.RunInfo(run_id="r1", name="yielding")))
        for step in range(20):
            lane.put(("r1", "loss", float(step), step, 0))
        time.sleep(0.5)
        assert backend.runs == {} and backend.calls == 0  # nothing written while training
        assert lane.flush(60)  # ... unless someone asks
        assert len(backend.run("r1").history("loss")) == 20
        lane.put(("r1", "loss", 20.0, 20, 0))
    finally:
        activity.fit_ended()
    wait_until(lambda: len(backend.run("r1").history("loss")) == 21)  # the fit ended
