"""The parts a lane is made of, each on its own: batching, the overflow file, the
spools and delivery, and the writer's pacing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlhooks import MlhooksWarning, RunInfo
from mlhooks.backends import BackendError, EndRun, LogBatch, Operation, StartRun
from mlhooks.backends.memory import MemoryBackend
from mlhooks.core import activity
from mlhooks.delivery.batching import Batcher, FlushMarker
from mlhooks.delivery.deliverer import Deliverer
from mlhooks.delivery.overflow import Overflow
from mlhooks.delivery.pacing import Pacer
from mlhooks.delivery.spool import SpoolFile, find_spools
from mlhooks.delivery.spooler import Spooler

# -- batching ------------------------------------------------------------------------------


def points(run_id: str, steps: range) -> list[tuple[str, str, float, int, int]]:
    return [(run_id, "loss", float(step), step, 0) for step in steps]


def test_consecutive_points_of_a_run_become_batches_of_at_most_the_limit() -> None:
    items: list[Any] = [*points("a", range(7)), *points("b", range(2)), *points("a", range(7, 8))]
    [(ops, marker)] = list(Batcher(max_batch_size=3).segments(items))
    assert marker is None
    assert [(op.run_id, [m[2] for m in op.metrics]) for op in ops] == [  # type: ignore[attr-defined]
        ("a", [0, 1, 2]),
        ("a", [3, 4, 5]),
        ("a", [6]),
        ("b", [0, 1]),
        ("a", [7]),  # not merged across run b: order is kept
    ]
    assert ops[0].metrics[0] == ("loss", 0.0, 0, 0)  # type: ignore[attr-defined]


def test_params_and_tags_merge_into_the_last_batch_of_their_run_without_changing_it() -> None:
    queued = LogBatch("a", params={"lr": "0.1"}, tags={"t": "x"})
    clashing = LogBatch("a", params={"lr": "0.2"})
    batcher = Batcher(max_batch_size=10)
    ops: list[Operation] = []
    batcher.extend(ops, [*points("a", range(2)), queued, *points("a", range(2, 4)), clashing])
    first, second = ops
    assert isinstance(first, LogBatch) and isinstance(second, LogBatch)
    assert [m[2] for m in first.metrics] == [0, 1, 2, 3]
    assert first.params == {"lr": "0.1"} and first.tags == {"t": "x"}
    assert second.params == {"lr": "0.2"}  # a param keeps one value per batch
    assert second is not clashing  # a private copy: later items may merge into it
    assert queued.metrics == [] and queued.params == {"lr": "0.1"}  # the queued one as it was


def test_a_full_batch_takes_no_more_and_other_operations_stay_apart() -> None:
    start = StartRun(RunInfo(run_id="a", name="a"))
    end = EndRun("a", "FINISHED", 1)
    ops: list[Operation] = []
    Batcher(max_batch_size=2).extend(
        ops, [start, *points("a", range(2)), LogBatch("a", tags={"t": "x"}), end]
    )
    assert ops[0] is start and ops[-1] is end
    assert [len(op) for op in ops[1:-1]] == [2, 1]  # type: ignore[arg-type]


def test_flush_markers_cut_the_items_into_segments() -> None:
    first, second = FlushMarker(), FlushMarker()
    items: list[Any] = [*points("a", range(3)), first, second, *points("a", range(3, 5))]
    segments = list(Batcher(max_batch_size=100).segments(items))
    assert [marker for _, marker in segments] == [first, second, None]
    assert [sum(len(op) for op in ops) for ops, _ in segments] == [3, 0, 2]  # type: ignore[misc]
    assert list(Batcher(100).segments([])) == [([], None)]  # the last segment is always there


def test_extend_leaves_flush_markers_out() -> None:
    ops: list[Operation] = []
    Batcher(100).extend(ops, [FlushMarker(), *points("a", range(2)), FlushMarker()])
    assert len(ops) == 1 and len(ops[0]) == 2  # type: ignore[arg-type]


# -- overflow ------------------------------------------------------------------------------


def test_the_overflow_file_gives_everything_back_in_order_once(tmp_path: Path) -> None:
    unpicklable = LogBatch("a", tags={"lock": threading.Lock()})  # type: ignore[dict-item]
    overflow = Overflow(tmp_path / "overflow")
    written: list[Any] = [
        *points("a", range(15_000)),
        unpicklable,
        *points("a", range(15_000, 25_000)),
    ]
    for item in written:
        overflow.write(item)
    assert overflow.path.parent == tmp_path / "overflow" and overflow.path.exists()
    read = list(overflow.read())
    assert read == written
    assert read[15_000] is unpicklable  # kept in memory, in its place
    assert not overflow.path.exists() and overflow.kept == {}


# -- spools and delivery -------------------------------------------------------------------


class Server(MemoryBackend):
    """Refuses to connect until ``up`` is set; rejects the param ``bad`` for good."""

    name: ClassVar[str] = "server"

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.up.set()

    def apply(self, op: Operation) -> None:
        if not self.up.is_set():
            raise ConnectionError("connection refused")
        if isinstance(op, LogBatch) and "bad" in op.params:
            raise BackendError("param 'bad' rejected", retryable=False)
        super().apply(op)


def parts(backend: Server, spool_dir: Path) -> tuple[Spooler, Deliverer]:
    spooler = Spooler(backend, spool_dir, probe_interval=0.01, max_probe_interval=0.04)
    return spooler, Deliverer(backend, spooler, (), threading.Event())


def test_a_backend_that_is_down_gets_a_spool_replayed_once_it_is_back(
    tmp_path: Path, lenient: None
) -> None:
    backend = Server()
    spooler, deliverer = parts(backend, tmp_path)
    start = StartRun(RunInfo(run_id="a", name="a"))
    assert deliverer.deliver([start]) and not spooler.is_down and spooler.next_probe is None
    backend.up.clear()
    with pytest.warns(MlhooksWarning, match="connection refused"):
        assert deliverer.deliver([LogBatch("a", [p[1:] for p in points("a", range(3))])])
    assert spooler.is_down and spooler.next_probe is not None
    assert deliverer.deliver([LogBatch("a", params={"lr": "0.1"})])  # straight to the spool
    assert deliverer.flush_backend()  # spooled durably
    [spool] = find_spools(tmp_path)
    assert spool.count_pending() == 2

    first_wait = spooler.next_probe - time.monotonic()
    spooler.probe()  # still down: the next probe comes later
    assert spooler.is_down and spooler.next_probe - time.monotonic() > first_wait
    backend.up.set()
    time.sleep(0.05)
    spooler.probe_if_due()
    assert not spooler.is_down and not find_spools(tmp_path)
    data = backend.run("a")
    assert [m.step for m in data.history("loss")] == [0, 1, 2] and data.params == {"lr": "0.1"}


def test_an_operation_rejected_for_good_is_kept_aside_and_the_rest_goes_on(
    tmp_path: Path, lenient: None
) -> None:
    backend = Server()
    spooler, deliverer = parts(backend, tmp_path)
    with pytest.warns(MlhooksWarning, match="rejected"):
        assert deliverer.deliver(
            [
                StartRun(RunInfo(run_id="a", name="a")),
                LogBatch("a", params={"bad": "1"}),
                LogBatch("a", params={"good": "1"}),
            ]
        )
    assert not spooler.is_down and backend.run("a").params == {"good": "1"}
    [rejected] = find_spools(tmp_path / "rejected")
    assert [op.params for _, op in rejected.pending()] == [{"bad": "1"}]  # type: ignore[attr-defined]


def test_what_can_be_neither_stored_nor_spooled_is_held_for_the_next_round(
    tmp_path: Path, lenient: None
) -> None:
    backend = Server()
    blocked = tmp_path / "spool"
    blocked.write_text("")  # a file: the spool cannot be created under it
    _, deliverer = parts(backend, blocked)
    backend.up.clear()
    start = StartRun(RunInfo(run_id="a", name="a"))
    with pytest.warns(MlhooksWarning):
        assert not deliverer.deliver([start])
    blocked.unlink()
    backend.up.set()
    assert deliverer.deliver([LogBatch("a", [("loss", 1.0, 0, 0)])])  # the held one first
    assert [m.step for m in backend.run("a").history("loss")] == [0]


def test_exit_takes_what_a_stuck_delivery_has_not_stored(tmp_path: Path, lenient: None) -> None:
    backend = Server()
    blocked = tmp_path / "spool"
    blocked.write_text("")
    _, deliverer = parts(backend, blocked)
    backend.up.clear()
    batch = LogBatch("a", [("loss", 1.0, 0, 0)])
    with pytest.warns(MlhooksWarning):
        assert not deliverer.deliver([batch])
    assert deliverer.abandon() == [batch] and deliverer.abandoned
    assert not deliverer.deliver([])  # the writer, waking up later, leaves it alone


def test_what_is_left_at_exit_gets_a_spool_of_its_own(tmp_path: Path, lenient: None) -> None:
    spooler, _ = parts(Server(), tmp_path)
    spooler.spool_at_exit([])  # nothing left: no file
    assert not find_spools(tmp_path)
    with pytest.warns(MlhooksWarning, match="were not stored before exit"):
        spooler.spool_at_exit([LogBatch("a", params={"lr": "0.1"})])
    [spool] = find_spools(tmp_path)
    assert isinstance(spool, SpoolFile) and spool.count_pending() == 1
    assert not spooler.is_down  # a file for `mlhooks sync`, not a spool the lane replays


# -- pacing --------------------------------------------------------------------------------


def test_the_writer_rests_in_proportion_to_its_work_within_bounds() -> None:
    pacer = Pacer(interval=0.05, busy_factor=9.0, max_interval=2.0)
    assert pacer.rest_after(0.0) == 0.05
    assert pacer.rest_after(0.1) == pytest.approx(0.9)
    assert pacer.rest_after(10.0) == 2.0
    assert Pacer(interval=5.0, max_interval=2.0).max_interval == 5.0  # never below interval
    assert pacer.wait_time(0.3, next_probe=None) == 0.3
    assert pacer.wait_time(0.3, next_probe=time.monotonic() - 1) == 0.0  # a probe is due
    assert pacer.wait_time(0.3, next_probe=time.monotonic() + 60) == pytest.approx(1.0)


def test_the_writer_yields_to_a_fit_unless_asked_behind_or_too_long() -> None:
    pacer = Pacer(interval=0.05, training_interval=10.0)
    now = time.monotonic()
    assert not pacer.yields_to_training(now, behind=False)  # no fit trains
    activity.fit_started()
    try:
        assert pacer.yields_to_training(now, behind=False)
        assert not pacer.yields_to_training(now, behind=True)
        assert not pacer.yields_to_training(now - 11.0, behind=False)
        pacer.urgent = True  # a flush waits
        assert not pacer.yields_to_training(now, behind=False)
    finally:
        activity.fit_ended()
