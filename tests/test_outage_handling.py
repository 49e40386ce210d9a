"""Outages users can see (issue 13, item 7), with a backend that can tell whether it
answers: a write that hangs or fails is found out by the lane's watch, the user is
warned and told when the backend is back, and neither the end of a run nor exit waits
for a backend known down. (The same against a real MLflow server: faults/test_outages.py.)
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunInfo, RunStatus
from mlhooks.backends import LogBatch, Operation, StartRun
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery.deliverer import Deliverer
from mlhooks.delivery.lanes import Lane, RetryPolicy
from mlhooks.delivery.reachability import Watch
from mlhooks.delivery.spool import find_spools
from mlhooks.delivery.spooler import Spooler
from mlhooks.testing import wait_until

SLOW = 60.0
"""A wait the code under test must not sit out (never a bound on how fast it is)."""


class Server(MemoryBackend):
    """A server that can be taken away: while ``up`` is clear, a write hangs until it
    comes back (or ``hang`` seconds pass, then fails), and ``reachable()`` says False."""

    name: ClassVar[str] = "server"
    hang = SLOW

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.up.set()
        self.asked = 0
        self.writing = threading.Event()

    def apply(self, op: Operation) -> None:
        self.writing.set()
        try:
            if not self.up.wait(self.hang):
                raise ConnectionError("connection refused")
            super().apply(op)
        finally:
            self.writing.clear()

    def reachable(self) -> bool | None:
        self.asked += 1
        return self.up.is_set()


class Refusing(Server):
    """A server that refuses connections at once while it is down."""

    hang = 0.0


def lane_of(run: Any) -> Lane:
    from mlhooks.delivery.recorder import recorder

    [lane] = recorder.lanes_of(run.run_id)
    return lane


def points(lane: Lane, run_id: str, steps: range) -> None:
    for step in steps:
        lane.put((run_id, "loss", float(step), step, 0))


def test_a_write_that_hangs_is_found_out_and_nothing_is_lost(
    tmp_path: Path, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A write hangs (the server stopped answering): the lane is known down long before
    the write gives up, with one warning saying since when and where the operations go;
    once the server answers, the hanging write completes, what came meanwhile is
    replayed from the spool, the user is told so, and every point is stored once."""
    backend = Server()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(probe_interval=0.1))
    lane.put(StartRun(RunInfo(run_id="r", name="r")))
    points(lane, "r", range(100))
    assert lane.flush(SLOW)
    backend.up.clear()
    with pytest.warns(MlhooksWarning, match="unreachable since .*; spooling to .*spool"):
        points(lane, "r", range(100, 200))
        wait_until(lambda: lane.is_down, timeout=SLOW)
        assert backend.writing.is_set()  # the write still hangs: the watch told
        since = lane.unreachable_since
        assert since is not None and since <= time.time()
        points(lane, "r", range(200, 300))
        assert not lane.flush(SLOW, unless_unreachable=True)  # known down: no wait
    with caplog.at_level(logging.WARNING, logger="mlhooks"):
        backend.up.set()
        wait_until(lambda: not lane.is_down, timeout=SLOW)
    [told] = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
    assert "backend 'server' (server) reachable again at" in told
    assert lane.flush(SLOW)
    assert [m.step for m in backend.run("r").history("loss")] == list(range(300))
    assert not find_spools(tmp_path / "spool")


def test_a_second_outage_is_found_while_the_writer_rests(tmp_path: Path, lenient: None) -> None:
    """After a probe brought the backend back, the watch goes on as after a delivery:
    a backend gone again while the lane holds nothing is not asked (nothing is at
    risk); once something waits to be stored, the second outage is found and warned
    about once more."""
    backend = Refusing()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(probe_interval=0.1))
    lane.put(StartRun(RunInfo(run_id="r", name="r")))
    assert lane.flush(SLOW)
    with pytest.warns(MlhooksWarning, match="unreachable since") as caught:
        backend.up.clear()
        points(lane, "r", range(10))
        wait_until(lambda: lane.unreachable_since is not None, timeout=SLOW)
        time.sleep(1.0)  # an outage of a while: nothing is delivered meanwhile
        backend.up.set()
        wait_until(lambda: not lane.is_down, timeout=SLOW)  # replayed by a probe
        backend.up.clear()  # and gone again, with nothing to write
        time.sleep(3 * Watch.quiet_after)
        assert lane.unreachable_since is None
        points(lane, "r", range(10, 20))
        wait_until(lambda: lane.unreachable_since is not None, timeout=10)
    assert len(caught) == 2
    backend.up.set()
    wait_until(lambda: not lane.is_down, timeout=SLOW)
    assert [m.step for m in backend.run("r").history("loss")] == list(range(20))
    lane.close(SLOW)


def test_the_end_of_a_run_does_not_wait_for_a_backend_known_down(
    monkeypatch: pytest.MonkeyPatch, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's run ends at once when its backend is known down, saying once that what
    it logged is in the spool and will be stored; the backend, once back, gets it all."""
    monkeypatch.setenv("MLHOOKS_FLUSH_TIMEOUT", str(SLOW))
    backend = Refusing()
    with pytest.warns(MlhooksWarning, match="unreachable since"):
        run = mlhooks.start_run("down", backends=[backend])
        mlhooks.log_param("lr", 0.1)
        backend.up.clear()
        for step in range(1000):
            mlhooks.log_metric("loss", float(step), step=step)
        wait_until(lambda: lane_of(run.info).unreachable_since is not None, timeout=SLOW)
        with caplog.at_level(logging.WARNING, logger="mlhooks"):
            started = time.monotonic()
            mlhooks.end_run()
            waited = time.monotonic() - started
    assert waited < SLOW / 4
    [told] = [r.getMessage() for r in caplog.records if "without waiting" in r.getMessage()]
    assert "run 'down' ended without waiting for backend 'server'" in told
    assert "kept in the spool" in told and "mlhooks sync" in told
    backend.up.set()
    wait_until(lambda: run.run_id in backend.runs and backend.run(run.run_id).info.end_time)
    data = backend.run(run.run_id)
    assert data.info.status is RunStatus.FINISHED and data.params == {"lr": "0.1"}
    assert [m.step for m in data.history("loss")] == list(range(1000))


def test_exit_spools_at_once_what_a_backend_known_down_holds(tmp_path: Path, lenient: None) -> None:
    """At exit, a lane whose backend is known down (its write hanging) does not wait
    its exit timeout: what it holds goes to a spool file at once, each operation once."""
    backend = Server()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(probe_interval=0.1))
    lane.put(StartRun(RunInfo(run_id="r", name="r")))
    assert lane.flush(SLOW)
    backend.up.clear()
    with pytest.warns(MlhooksWarning):
        points(lane, "r", range(50))
        wait_until(lambda: lane.is_down, timeout=SLOW)
        points(lane, "r", range(50, 80))
        started = time.monotonic()
        lane.close(SLOW)
        assert time.monotonic() - started < SLOW / 4
    spooled = [op for spool in find_spools(tmp_path / "spool") for _, op in spool.pending()]
    assert sorted(m[2] for op in spooled for m in op.metrics) == list(range(80))
    backend.up.set()  # the write that hung lands after all (a replay stores it once more:
    wait_until(lambda: not backend.writing.is_set())  # a metric row twice is one row to MLflow)
    time.sleep(0.2)  # and nothing after it: the lane was abandoned
    stored = [m.step for m in backend.run("r").history("loss")]
    assert stored == list(range(len(stored))) and len(stored) <= 50


def test_a_probe_asks_a_backend_that_can_tell_before_it_replays(
    tmp_path: Path, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    """While the backend says it does not answer, probes only ask it (cheap) and come
    every second at most; once it answers, the spool is replayed and the user is told
    how many operations were. One warning per outage, however often it is found down."""
    backend = Refusing()
    spooler = Spooler(backend, tmp_path, probe_interval=5.0, max_probe_interval=60.0)
    deliverer = Deliverer(backend, spooler, (), threading.Event())
    backend.up.clear()
    with pytest.warns(MlhooksWarning, match="unreachable since") as caught:
        spooler.unreachable(time.time())
        spooler.unreachable(time.time())
        assert deliverer.deliver([StartRun(RunInfo(run_id="r", name="r"))])
        assert deliverer.deliver([LogBatch("r", [("loss", 1.0, 0, 0)])])
    assert len(caught) == 1
    assert spooler.next_probe is not None and spooler.next_probe - time.monotonic() <= 1.0
    asked = backend.asked
    assert spooler.unreachable_since is not None
    spooler.probe()
    assert backend.asked == asked + 1 and spooler.is_down and backend.runs == {}
    backend.up.set()
    with caplog.at_level(logging.WARNING, logger="mlhooks"):
        spooler.probe()
    assert not spooler.is_down and not find_spools(tmp_path)
    assert any("2 operations replayed" in r.getMessage() for r in caplog.records)
    assert [m.step for m in backend.run("r").history("loss")] == [0]


class Failing(MemoryBackend):
    """A third party's backend that cannot tell whether it answers."""

    name: ClassVar[str] = "failing"

    def log_batch(self, batch: LogBatch) -> None:
        raise ConnectionError("connection refused")


class CannotTell(Refusing):
    """A backend whose ``reachable()`` says None (a database, not a server)."""

    def reachable(self) -> bool | None:
        self.asked += 1
        return None


def test_a_backend_that_cannot_tell_is_not_watched(tmp_path: Path, lenient: None) -> None:
    """A backend without ``reachable()`` (or one that says None) gets no watch: it is
    found down when its retries are used up, as before, with the error in the warning."""
    backend = Failing()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(delays=(0.01,)))
    with pytest.warns(MlhooksWarning, match=r"is failing since .*ConnectionError"):
        lane.put(StartRun(RunInfo(run_id="r", name="r")))
        points(lane, "r", range(3))
        assert lane.flush(SLOW)
    assert lane.is_down and not lane._deliverer.watch.watching
    assert not any(t.name == "mlhooks-watch-failing" for t in threading.enumerate())
    lane.close(0.5)

    other = CannotTell()
    lane = Lane(other, spool_dir=tmp_path / "other", retry=RetryPolicy(delays=(0.01,)))
    lane.put(StartRun(RunInfo(run_id="r", name="r")))
    assert lane.flush(SLOW)
    wait_until(lambda: not lane._deliverer.watch.watching)  # asked once, said None
    assert other.asked == 1
    lane.close(0.5)


class CountsCloses(Failing):
    """A failing backend that counts how often its lane closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_a_closed_lane_lets_go_of_its_spools_and_closes_once(tmp_path: Path, lenient: None) -> None:
    """A lane that spooled during an outage lets go of its spool when it closes: a
    process that lives on after closing it (the writer service) does not keep `mlhooks
    sync` from replaying it. A second close does nothing: the backend is closed once,
    nothing is spooled again."""
    backend = CountsCloses()
    lane = Lane(backend, spool_dir=tmp_path / "spool", retry=RetryPolicy(delays=(0.01,)))
    with pytest.warns(MlhooksWarning, match="is failing since"):
        lane.put(StartRun(RunInfo(run_id="r", name="r")))
        points(lane, "r", range(3))
        assert lane.flush(SLOW)
    (spool,) = find_spools(tmp_path / "spool")
    assert spool.being_written()
    lane.close(0.5)
    assert not spool.being_written()
    assert backend.closed == 1
    spooled = [op for _, op in spool.pending()]
    assert [type(op).__name__ for op in spooled] == ["LogBatch"]  # the 3 points
    lane.close(SLOW)  # once: the second does nothing
    assert backend.closed == 1
    assert [found.path for found in find_spools(tmp_path / "spool")] == [spool.path]
    assert [op for _, op in spool.pending()] == spooled
    assert not spool.being_written()
