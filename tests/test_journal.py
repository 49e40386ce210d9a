"""The write-ahead journal: records, cursor, recovery, and a journaled lane's window."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlhooks.backends.base import EndRun, LogArtifact, LogBatch, LogModel, StartRun
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.core.types import ModelArtifact, RunInfo, RunStatus
from mlhooks.delivery import journaling
from mlhooks.delivery.journal import (
    CursorFile,
    JournalFile,
    JournalWriter,
    find_journals,
    owner_alive,
    process_started,
    recover,
)
from mlhooks.delivery.lanes import Lane
from mlhooks.delivery.spool import decode, encode


def _ops() -> list:
    run = RunInfo(run_id="r1", name="one")
    return [
        StartRun(run),
        LogBatch(
            "r1", [("loss", 0.5, 0, 1), ("loss", math.nan, 1, 2), ("big", math.inf, 2**63 - 1, 3)]
        ),
        LogBatch("r1", params={"lr": "0.1"}, tags={"t": "v"}),
        LogArtifact("r1", "/tmp/a.txt", "plots"),
        LogModel("r1", ModelArtifact("m", "python", payload=b"\x00bytes")),
        EndRun("r1", "FINISHED", 10),
    ]


def test_every_operation_comes_back_as_written(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, LocalBackend(tmp_path / "store"))
    writer.append(_ops())
    back = [op for _, op, _ in JournalFile(writer.path).records()]
    assert [type(op) for op in back] == [type(op) for op in _ops()]
    assert back[1].metrics[0] == ("loss", 0.5, 0, 1)
    assert math.isnan(back[1].metrics[1][1]) and back[1].metrics[2] == (
        "big",
        math.inf,
        2**63 - 1,
        3,
    )
    assert back[2].params == {"lr": "0.1"} and back[2].tags == {"t": "v"}
    assert back[4].model.payload == b"\x00bytes"
    assert [index for index, _, _ in JournalFile(writer.path).records()] == list(range(6))


def test_only_the_first_deliverer_of_a_journal_reads_its_new_runs_as_new(
    tmp_path: Path,
) -> None:
    """A run this process made up is journaled as new. The writer service that takes
    the journal first creates it without looking for it; a later deliverer (the
    service died, the process delivers it itself, a recovery, a spool's replay) may
    find it stored, and reads it as not new."""
    made_up, continued = RunInfo(run_id="r1", name="one"), RunInfo(run_id="r2", name="two")
    made_up.new = True
    writer = JournalWriter(tmp_path, LocalBackend(tmp_path / "store"), deliver_here=False)
    writer.append([StartRun(made_up), StartRun(continued)])
    journal = JournalFile(writer.path)

    def news(first_reading: bool) -> list[bool]:
        return [op.run.new for _, op, _ in journal.records(None, first_reading)]

    assert news(first_reading=False) == [False, False]  # the default: a replay's
    assert news(first_reading=True) == [True, False]

    cursor = CursorFile(journal.cursor_path)
    assert cursor.take_first()
    cursor.save(1)
    cursor.close()
    assert journal.delivered() == 1  # the cursor reads as before
    again = CursorFile(journal.cursor_path)  # the next deliverer (the first one died)
    assert not again.take_first()
    again.close()

    here = JournalWriter(tmp_path, LocalBackend(tmp_path / "store"))  # delivered here
    assert JournalFile(here.path).cursor_path.read_bytes().count(b"\n") == 1  # no mark
    assert decode(encode(StartRun(made_up))).run.new is False  # a spool never trusts it


def test_a_record_torn_by_a_death_ends_the_journal(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, LocalBackend(tmp_path / "store"))
    writer.append(_ops()[:3])
    whole = writer.path.stat().st_size
    writer.append(_ops()[3:4])
    with open(writer.path, "r+b") as f:  # the last write cut half-way
        f.truncate(whole + 10)
    assert len(list(JournalFile(writer.path).records())) == 3


def test_a_live_journal_is_locked_and_never_recovered(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / ".journal", LocalBackend(tmp_path / "store"))
    writer.append(_ops())
    assert owner_alive(writer.path)
    (journal,) = find_journals(tmp_path)
    assert recover(journal, lambda header: LocalBackend(tmp_path / "store")) is None
    writer.close(remove=False)
    assert not owner_alive(writer.path)


def test_recovery_goes_on_from_the_cursor_and_ends_open_runs_killed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = JournalWriter(tmp_path / ".journal", LocalBackend(store))
    ops = _ops()[:3]  # started, never ended
    writer.append(ops)
    backend = LocalBackend(store)
    backend.apply(ops[0])  # delivered before the "death"
    writer.save_cursor(1)
    writer.close(remove=False)
    _as_if_written_by_a_dead_process(writer.path)
    (journal,) = find_journals(tmp_path)
    result = recover(journal, lambda header: LocalBackend(store))
    assert result is not None and result.error is None
    assert result.delivered == 2 and result.killed == ["r1"]
    data = LocalStore(store).get_run("r1")
    assert data.info.status is RunStatus.KILLED
    assert [m.step for m in data.history("loss")] == [0, 1]
    assert data.params == {"lr": "0.1"}
    assert not find_journals(tmp_path)


def _as_if_written_by_a_dead_process(path: Path) -> None:
    """Give the journal at ``path`` the pid of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    header, _, rest = path.read_bytes().partition(b"\n")
    data = json.loads(header)
    data["pid"] = int(done.stdout)
    path.write_bytes(json.dumps(data).encode() + b"\n" + rest)


def test_process_start_time_tells_this_process(tmp_path: Path) -> None:
    started = process_started()
    assert 0 < started <= time.time()


class SlowLocal(LocalBackend):
    """A journaled backend slower than the points come."""

    def log_batch(self, batch: LogBatch) -> None:
        time.sleep(0.002)
        super().log_batch(batch)


def test_a_journaled_lane_keeps_memory_bounded_and_order(tmp_path: Path) -> None:
    """Past its limit, a journaled lane keeps operations on disk only and reads them
    back in order: memory stays bounded, nothing is lost or reordered."""
    backend = SlowLocal(tmp_path / "store")
    backend.max_batch_size = 50  # type: ignore[misc]
    lane = Lane(backend, spool_dir=tmp_path / "spool", queue_limit=500, journal=tmp_path / "j")
    lane.put(StartRun(RunInfo(run_id="r1", name="bounded")))
    largest = 0
    went_to_disk = False
    part = lane._journal
    assert part is not None
    for step in range(20_000):
        lane.put(("r1", "loss", float(step), step, 0))
        if step % 100 == 0:
            journaling.journaler.round()
            largest = max(largest, part.window.weight)
            went_to_disk = went_to_disk or part.window.disk_from is not None
    assert lane.flush(120)
    assert went_to_disk
    assert largest <= 500 + 100  # the limit, and at most one round's take past it
    history = LocalStore(tmp_path / "store").get_run("r1").history("loss")
    assert [m.step for m in history] == list(range(20_000))
    lane.close(10)
    assert not list((tmp_path / "j").glob("*.journal"))


def test_a_flush_during_a_fit_does_not_wait_for_the_fit(tmp_path: Path) -> None:
    """The writer of a journaled lane rests while a fit trains, unless a flush waits."""
    from mlhooks.core import activity

    lane = Lane(
        LocalBackend(tmp_path / "store"), spool_dir=tmp_path / "spool", journal=tmp_path / "j"
    )
    lane.put(StartRun(RunInfo(run_id="r1", name="fit")))
    lane.pacer.training_interval = 10_000.0  # unasked, it would rest for the whole fit
    activity.fit_started()
    try:
        for step in range(100):
            lane.put(("r1", "loss", float(step), step, 0))
        assert lane.flush(60)  # returns while the fit still trains
    finally:
        activity.fit_ended()
    lane.close(10)


def test_a_journal_rotates_once_delivered_and_carries_open_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journaling, "ROTATE_BYTES", 2_000)
    lane = Lane(
        LocalBackend(tmp_path / "store"), spool_dir=tmp_path / "spool", journal=tmp_path / "j"
    )
    lane.put(StartRun(RunInfo(run_id="r1", name="long")))
    for step in range(500):
        lane.put(("r1", "loss", float(step), step, 0))
    assert lane.flush(30)
    first = lane.journal_path
    journaling.journaler.round()  # nothing new, all delivered: a new file
    assert lane.journal_path != first and first is not None and not first.exists()
    header = JournalFile(lane.journal_path).header()  # type: ignore[arg-type]
    assert header.open_runs == ["r1"]
    lane.close(10)


def test_the_journal_thread_writes_within_its_interval(tmp_path: Path) -> None:
    """Points put are on disk after the journal thread's next round, whatever the
    writer does (here it is blocked)."""
    gate = threading.Event()

    class Blocked(LocalBackend):
        def apply(self, op):  # type: ignore[no-untyped-def]
            gate.wait(30)
            super().apply(op)

    lane = Lane(Blocked(tmp_path / "store"), spool_dir=tmp_path / "spool", journal=tmp_path / "j")
    try:
        lane.put(StartRun(RunInfo(run_id="r1", name="blocked")))
        for step in range(1000):
            lane.put(("r1", "loss", float(step), step, 0))
        journaling.journaler.round()
        path = lane.journal_path
        assert path is not None
        points = sum(
            len(op.metrics) for _, op, _ in JournalFile(path).records() if isinstance(op, LogBatch)
        )
        assert points == 1000
    finally:
        gate.set()
    assert lane.flush(30)
    lane.close(10)


def test_exit_with_a_slow_backend_spools_what_the_writer_holds(tmp_path: Path) -> None:
    """At exit, what the writer had taken but not stored is in the exit spool, once:
    stored and spooled together are every point, none twice (it was lost before)."""
    from mlhooks.delivery.spool import find_spools

    class Slow(LocalBackend):
        max_batch_size = 100

        def log_batch(self, batch: LogBatch) -> None:
            time.sleep(0.02)
            super().log_batch(batch)

    store = tmp_path / "store"
    lane = Lane(Slow(store), spool_dir=tmp_path / "spool", journal=tmp_path / "j")
    lane.put(StartRun(RunInfo(run_id="r1", name="slow")))
    for step in range(5000):
        lane.put(("r1", "loss", float(step), step, 0))
    journaling.journaler.round()
    time.sleep(0.2)  # the writer is busy with the first of 50 batches
    lane.close(0.3)
    stored = [m.step for m in LocalStore(store).get_run("r1").history("loss")]
    spooled = [
        point[2]
        for spool in find_spools(tmp_path / "spool")
        for _, op in spool.pending()
        if isinstance(op, LogBatch)
        for point in op.metrics
    ]
    assert spooled, "the backend was too slow for everything to be stored"
    assert sorted(stored + spooled) == list(range(5000))
    assert not list((tmp_path / "j").glob("*.journal"))
