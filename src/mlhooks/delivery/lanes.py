"""The background writer: the training thread enqueues, one thread per backend stores.

Each backend gets a :class:`Lane`: an in-memory queue and a writer thread. A slow or
broken backend only ever delays its own lane. The lane composes parts with one job each:

* ``put`` is all the training thread does: a ``deque.append`` (metric points are plain
  tuples). Past ``queue_limit`` items, new items spill to an :class:`~.overflow.Overflow`
  file instead, so memory stays bounded at any rate, and the writer reads it back in order.
* The writer's :class:`~.batching.Batcher` merges consecutive metrics, params and tags of
  one run into one ``LogBatch`` of at most ``backend.max_batch_size`` entries.
* Its :class:`~.deliverer.Deliverer` retries a failing operation with backoff; if it
  still fails, it and everything after it go to a spool file, which the lane's
  :class:`~.spooler.Spooler` replays every ``probe_interval`` seconds until that works
  and the lane is live again. Nothing is dropped: an operation the backend rejects
  outright lands in a spool of its own for ``mlhooks sync``.
* Its :class:`~.pacing.Pacer` decides how long the writer rests between rounds, and
  when it yields to a fit that trains.
* A journaled lane (the default for backends that outlive the process; see
  :mod:`.journaling`) has the journal thread take what was put, write it to the
  lane's journal within ``MLHOOKS_JOURNAL_INTERVAL`` seconds and hand it to the writer,
  which delivers it and moves the journal's cursor: a killed process loses at most that
  interval of data, and the next process or ``mlhooks sync`` delivers the rest.
* ``flush`` waits until everything put before it is stored (or safely spooled).
  Interpreter exit flushes; whatever a stuck backend still holds then is spooled.
* After ``os.fork()`` the child starts with empty lanes and fresh threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlhooks.backends.base import Backend, Operation
from mlhooks.core import settings
from mlhooks.core.errors import report_background_error, setting_or_default
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child
from mlhooks.delivery.batching import Batcher, FlushMarker, MetricItem
from mlhooks.delivery.deliverer import Deliverer
from mlhooks.delivery.journaling import JournalPart, journaler
from mlhooks.delivery.overflow import Overflow
from mlhooks.delivery.pacing import Pacer
from mlhooks.delivery.spooler import Spooler

EXIT_GRACE = 2.0
"""Seconds exit lets an operation being stored finish before it spools the rest."""

__all__ = ["Lane", "MetricItem", "RetryPolicy", "flush_lanes", "retry_policy_from_env"]


class Service(Protocol):
    """The writer service as a lane sees it (:mod:`.service_client`)."""

    def attach(self, lane: Lane, journal: Path) -> None:
        """Have the service deliver ``journal``, the lane's, from its cursor on."""

    def wake(self) -> None:
        """New records were written to an attached journal."""

    def wait_stored(
        self, lane: Lane, upto: int, timeout: float | None, unless_unreachable: bool
    ) -> bool:
        """Wait until the lane's operations before index ``upto`` are stored or spooled."""

    def bye(self, lane: Lane, end: int) -> None:
        """This process writes no more to the lane's journal, which ends at ``end``."""

    def state(self, lane: Lane) -> tuple[bool, float | None]:
        """Whether the lane's backend is down, and since when it is unreachable."""

    failed: bool
    """True once the service was given up: lanes deliver in this process."""

    def settle(self, timeout: float) -> None:
        """Wait until the service was started (or attached to), or given up."""

    def stores_before_exit(self) -> bool:
        """Whether this process's exit waits for the service to store what it left:
        a worker's does (its parent reads what it stored once it joined it); the
        process that started the service only hands over."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a lane tries before it spools (seconds)."""

    delays: tuple[float, ...] = (0.1, 0.3, 1.0, 2.0)
    probe_interval: float = 5.0
    max_probe_interval: float = 60.0


def retry_policy_from_env() -> RetryPolicy:
    """``MLHOOKS_RETRY_DELAYS`` (seconds, comma-separated) and ``MLHOOKS_PROBE_INTERVAL``
    over the defaults."""
    delays: tuple[float, ...] = settings.get("MLHOOKS_RETRY_DELAYS")
    probe: float = settings.get("MLHOOKS_PROBE_INTERVAL")
    return RetryPolicy(delays=delays, probe_interval=probe, max_probe_interval=max(probe, 60.0))


class Lane:
    """One backend's queue and writer thread (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        *,
        spool_dir: Path,
        queue_limit: int = 200_000,
        retry: RetryPolicy | None = None,
        interval: float | None = None,
        busy_factor: float = 9.0,
        max_interval: float = 2.0,
        journal: Path | None = None,
        service: Service | None = None,
        part: Callable[[Lane], JournalPart] | None = None,
    ) -> None:
        self.backend = backend
        self.service = service if journal is not None else None
        """The writer service that delivers this lane's journal; None: this process's
        writer thread does."""
        self._make_part = part or _journal_part
        self.spool_dir = spool_dir
        self.journal_dir = journal
        """Where this lane's journal goes; None: not journaled (data in memory only)."""
        self._journal: JournalPart | None = None
        self.queue_limit = queue_limit
        self.retry = retry or RetryPolicy()
        self.pacer = Pacer(
            interval if interval is not None else backend.write_interval,
            busy_factor=busy_factor,
            max_interval=max_interval,
        )
        self.batcher = Batcher.for_backend(backend)
        self._full = backend.max_batch_size
        self._reset()
        _LANES.add(self)

    def _reset(self) -> None:
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._overflow: Overflow | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._closing = threading.Event()
        self._closed = False
        """True once :meth:`close` began: a second close does nothing."""
        self._fast = False
        """True once the writer runs and nothing is spilled: put() just appends."""
        retry = self.retry
        self._spooler = Spooler(
            self.backend, self.spool_dir, retry.probe_interval, retry.max_probe_interval
        )
        self._deliverer = Deliverer(
            self.backend, self._spooler, retry.delays, self._closing, self._holds_work
        )
        self.pacer.urgent = False
        if self._journal is not None:
            self._journal.drop_in_child()
        self._journal = self._make_part(self) if self.journal_dir is not None else None
        if self._journal is not None:
            self._journal.remote = self.service is not None
        self._intake = journaler.wake if self._journal is not None else self._wake
        self._going_local = threading.Lock()
        self._handed_over = False
        """The lane closed with its journal handed to the service (going local after
        that would deliver a closed journal part)."""
        self._delivering = threading.Lock()
        """Held by a journaled lane's writer while it stores one operation."""
        """Woken when the queue holds a full batch: the journal thread, or the writer."""

    # -- training thread --------------------------------------------------------------

    def put(self, item: Operation | MetricItem) -> None:
        """Enqueue an operation or a metric tuple. Never blocks on the backend."""
        queue = self._queue
        if self._fast and len(queue) < self.queue_limit:
            queue.append(item)
            if len(queue) == self._full:  # a full batch need not wait
                self._intake.set()
        else:
            self._put_slow(item)

    def _put_slow(self, item: Any) -> None:
        """First put (starts the writer), memory full (spills to disk in order), or the
        lane closed at exit (straight to a spool file)."""
        if self._closing.is_set():
            if not isinstance(item, FlushMarker):
                ops: list[Operation] = []
                self.batcher.add(ops, item)
                self._spooler.spool_at_exit(ops)
            else:
                item.done.set()
            return
        if not self._started:
            self._start()
        with self._lock:
            if self._overflow is None:
                if len(self._queue) < self.queue_limit:
                    self._queue.append(item)
                    self._fast = True
                    return
                self._overflow = Overflow(self.spool_dir / "overflow")
                self._fast = False
            self._overflow.write(item)
        self._intake.set()

    def flush(self, timeout: float | None = None, *, unless_unreachable: bool = False) -> bool:
        """Wait until everything put before this call is stored or spooled;
        ``unless_unreachable``: stop waiting (False) once the backend is known not to
        answer at all (``unreachable_since``)."""
        if not self._started and not self._queue and self._overflow is None:
            return True
        if self.service is not None:
            return self._flush_remote(self.service, timeout, unless_unreachable)
        marker = FlushMarker()
        self.put(marker)  # type: ignore[arg-type]
        self.pacer.urgent = True
        self._intake.set()
        self._wake.set()
        if not unless_unreachable:
            return marker.done.wait(timeout) and marker.ok
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.unreachable_since is None:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if marker.done.wait(max(0.0, left)):
                return marker.ok
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def _flush_remote(
        self, service: Service, timeout: float | None, unless_unreachable: bool
    ) -> bool:
        """Journal what is queued now (on this thread), then wait for the service to
        store it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._journal_queued(timeout):
            return False  # the journal cannot be written: nothing reached the service
        if self.service is not service:  # it went local meanwhile
            return self.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        part = self._journal
        assert part is not None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return service.wait_stored(self, part.window.end, left, unless_unreachable)

    def _journal_queued(self, timeout: float | None) -> bool:
        """Append what is queued now to the journal, on this thread; False when the
        journal could not take it all within ``timeout`` (a full or read-only disk)."""
        part = self._journal
        assert part is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            part.round()
            if not part.unwritten:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def go_local(self, timeout: float = 5.0) -> None:
        """Deliver this lane's journal in this process from now on (the writer service
        cannot be used), from the service's cursor. Once: a second call (the exit's,
        while the service client's is under way) waits for the first."""
        with self._going_local:
            part = self._journal
            if self.service is None or part is None or self._handed_over:
                return
            part.go_local(timeout)
            self.service = None
        with self._lock:
            started = self._started and self._thread is None
        if started:
            self._start_writer()
        self._wake.set()

    def leave_service(self) -> None:
        """The journal cannot be written (a full or read-only disk), and the service
        reads only the journal: once it stored what the journal holds, this process's
        writer delivers the rest, from memory (as for a journal that fails in process)."""
        service, part = self.service, self._journal
        if service is None or part is None:
            return
        if part.writer is not None:
            service.wait_stored(self, part.window.end, None, unless_unreachable=False)
            service.bye(self, part.window.end)
        part.take_back()
        self.service = None
        with self._lock:
            started = self._started and self._thread is None
        if started:
            self._start_writer()
        self._wake.set()

    def threads(self) -> list[threading.Thread]:
        """The threads of this lane: its writer and its backend's watch, once started."""
        found = (self._thread, self._deliverer.watch.thread)
        return [thread for thread in found if thread is not None]

    @property
    def pending(self) -> int:
        """Items waiting in memory (not counting spilled ones)."""
        return len(self._queue)

    def _holds_work(self) -> bool:
        """Something put is not stored yet: queued, spilled to disk, or in the journal's
        window (its watch asks a quiet backend only then)."""
        part = self._journal
        return (
            bool(self._queue)
            or self._overflow is not None
            or (part is not None and part.window.pending() > 0)
        )

    @property
    def journal_path(self) -> Path | None:
        """This lane's journal file, once it has one."""
        part = self._journal
        return part.writer.path if part is not None and part.writer is not None else None

    @property
    def abandoned(self) -> bool:
        """True once exit has spooled what this lane had not stored."""
        return self._deliverer.abandoned

    @property
    def is_down(self) -> bool:
        """True while the backend fails and operations go to the spool."""
        service = self.service
        if service is not None:
            return service.state(self)[0]
        return self._spooler.is_down

    @property
    def unreachable_since(self) -> float | None:
        """Since when (``time.time()``) the backend is known not to answer; None while
        it answers (or cannot tell)."""
        service = self.service
        if service is not None:
            return service.state(self)[1]
        return self._spooler.unreachable_since

    @property
    def max_interval(self) -> float:
        """The longest rest of the writer between rounds (see :class:`Pacer`)."""
        return self.pacer.max_interval

    @max_interval.setter
    def max_interval(self, seconds: float) -> None:
        self.pacer.max_interval = seconds

    # -- writer thread ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        if self.service is None:
            self._start_writer()
        if self._journal is not None:
            journaler.add(self._journal)

    def _start_writer(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name=f"mlhooks-writer-{self.backend.name}", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        pacer = self.pacer
        rest = pacer.interval
        last = time.monotonic()
        prepared = False
        while True:
            self._wake.wait(pacer.wait_time(rest, self._spooler.next_probe))
            self._wake.clear()
            if pacer.yields_to_training(last, behind=self._behind()):
                rest = pacer.interval  # look again soon: the fit may end
                continue
            pacer.urgent = False
            started = last = time.monotonic()
            if not prepared:
                prepared = True
                self._prepare()
            try:
                self._drain()
                self._spooler.probe_if_due()
                self._spooler.set_aside_waiting()  # rejected ones a bad disk did not take
            except BaseException as error:  # noqa: BLE001 - the writer must survive
                report_background_error("background writer", error)
            if self._closing.is_set() and not self._queue and self._overflow is None:
                return
            rest = pacer.rest_after(time.monotonic() - started)

    def _prepare(self) -> None:
        """The backend's one-time preparation (MLflow's import), on this writer thread
        before its first write: never on the training thread, and not before the pacer
        lets the writer work."""
        try:
            self.backend.prepare()
        except Exception as error:  # noqa: BLE001 - the writer reports it again on use
            report_background_error(f"prepare of backend {self.backend.name!r}", error)

    def _behind(self) -> bool:
        """Closing, spilling to disk, spooling, or a journal read back from disk: no
        time to yield to training."""
        journal = self._journal
        return (
            self._closing.is_set()
            or self._overflow is not None
            or self._spooler.is_down
            or (journal is not None and journal.window.disk_from is not None)
        )

    def _take_queued(self) -> list[Any]:
        """Everything queued so far, in order (spilled items included): what the journal
        thread takes for a journaled lane."""
        items = self._take_from_memory(len(self._queue))
        if self._queue:
            return items
        with self._lock:
            overflow, self._overflow = self._overflow, None
            self._fast = self._started
        if overflow is not None:
            items.extend(overflow.read())
        return items

    def _drain(self) -> None:
        if self._journal is not None:
            self._deliver_journaled(self._journal)
            return
        while True:
            if self._queue:
                self._process(self._take_from_memory())
                if self._caught_up():
                    return  # what came meanwhile waits for the next round, in one batch
                continue
            with self._lock:
                overflow, self._overflow = self._overflow, None
                self._fast = self._started
            if overflow is None:
                return
            chunk: list[Any] = []
            for item in overflow.read():
                chunk.append(item)
                if len(chunk) >= 10_000:
                    self._process(chunk)
                    chunk = []
            self._process(chunk)

    def _caught_up(self) -> bool:
        """Few items came while the last ones were stored: the writer may rest
        (unless it is closing). Behind, it goes on at once."""
        return (
            not self._closing.is_set()
            and self._overflow is None
            and len(self._queue) < self.backend.max_batch_size
        )

    def _take_from_memory(self, most: int = 10_000) -> list[Any]:
        queue = self._queue
        items = []
        for _ in range(min(most, len(queue))):
            items.append(queue.popleft())
        return items

    def _deliver_journaled(self, part: JournalPart) -> None:
        """Deliver what the journal thread put in the window, moving the journal's
        cursor after each operation; consecutive batches of a run go as one."""
        deliverer = self._deliverer
        while True:
            taken = part.take()
            if not taken:
                break
            merged: list[Operation] = []
            last: list[int] = []  # the journal index of the last entry merged into each
            for index, op in taken:
                count = len(merged)
                self.batcher.add(merged, op)
                if len(merged) > count:
                    last.append(index)
                else:
                    last[-1] = index
            for op, index in zip(merged, last, strict=True):
                with self._delivering:  # exit takes the window between two operations
                    if deliverer.abandoned:
                        return  # exit spooled what is left
                    if not deliverer.deliver([op]):
                        # Neither stored nor spooled (a full disk): it stays in the
                        # window, tried again next round; nobody waits for a flush.
                        deliverer.forget_held()
                        self._release(part.window.all_markers(), ok=False)
                        return
                    part.delivered(index + 1)
                self._release(part.window.due_markers(), ok=True)
        due = part.window.due_markers()
        if due:
            self._release(due, ok=deliverer.flush_backend())

    @staticmethod
    def _release(markers: list[FlushMarker], ok: bool) -> None:
        for marker in markers:
            marker.ok = ok
            marker.done.set()

    def _process(self, items: list[Any]) -> None:
        """Store a run of queued items: batch, deliver, release flush markers."""
        deliverer = self._deliverer
        for ops, marker in self.batcher.segments(items):
            if marker is None:
                deliverer.deliver(ops)
                continue
            try:
                marker.ok = deliverer.deliver(ops) and deliverer.flush_backend()
            finally:
                marker.done.set()

    # -- shutdown -----------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Flush within ``timeout`` seconds, not waiting for a backend known not to
        answer; spool whatever is still not stored. A lane the writer service delivers
        only hands over: what is queued goes into the journal, and the service stores
        it after this process has gone (the exit does not wait for the backend). Once:
        a second call returns at once (the writer service closes a lane when its journal
        ends, and its own exit closes every lane). A worker's lane (a process attached
        to its parent's service) first waits for the service to store what it holds,
        as in process: its parent finds it stored once it joined the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        # Read once per use: the thread that gives the service up sets it to None.
        service = self.service
        if service is not None and self._journal is not None:
            self._journal_queued(timeout)  # what it cannot take is spooled below
            service.settle(min(timeout, SETTLE_WAIT))
        service = self.service
        if service is not None and service.failed:
            self.go_local()  # no service after all: this process delivers, as in process
        flushed = False
        service = self.service
        if service is None or self._journal is None:  # in process (or it went local)
            flushed = self.flush(max(0.0, deadline - time.monotonic()), unless_unreachable=True)
        elif service.stores_before_exit():
            self.flush(max(0.0, deadline - time.monotonic()), unless_unreachable=True)
        with self._lock:
            self._closing.set()
            self._fast = False  # later puts take the slow path, straight to a spool
        self._wake.set()
        with self._going_local:  # the service is given up before this, or not at all
            service = self.service
            if service is not None and self._journal is not None:
                self._close_remote(service, self._journal)
                self._handed_over = True
                return
        # In process (flushed above), or the service given up during this close: then
        # nothing was flushed, and what the writer go_local started has not stored yet
        # is spooled, once (see _spool_leftovers).
        spooled = self._spool_late_items() if flushed else self._spool_leftovers()
        if self._journal is not None:
            self._close_journal(self._journal, spooled)
        self._spooler.set_aside_at_exit()
        self._spooler.close()
        try:
            self.backend.close()
        except Exception as error:  # noqa: BLE001
            report_background_error(f"close of backend {self.backend.name!r}", error)

    def _close_remote(self, service: Service, part: JournalPart) -> None:
        """At exit, a lane the writer service delivers: what the journal could not take
        and what came after the hand-over go to a spool; the service is told the
        journal ends here, and goes on alone with what it has not stored yet. It
        removes the journal once it stored it (should it die, ``mlhooks sync`` or the
        next process delivers the rest from the journal)."""
        with part.lock:
            leftovers, part.unwritten = part.unwritten, []
            self._spooler.spool_at_exit(self._queued_ops(leftovers))
            service.bye(self, part.window.end)
        part.close(remove=False)

    def _spool_leftovers(self) -> bool:
        """At exit with a stuck backend: put everything not stored into a spool file;
        True when that worked. (The writer, if it wakes up, finds the lane abandoned
        and leaves it alone.)"""
        ops = self._deliverer.abandon()
        if self._journal is not None:
            # What the writer holds is still in the window, which has it whole. An
            # operation being stored gets a moment to finish, so that it is not also
            # spooled; one that hangs is spooled (and may be stored twice).
            finished = self._delivering.acquire(timeout=EXIT_GRACE)
            try:
                with self._journal.lock:
                    ops = self._journal.leftovers()
            finally:
                if finished:
                    self._delivering.release()
        return self._spooler.spool_at_exit(self._queued_ops(ops))

    def _spool_late_items(self) -> bool:
        """At exit after a flush: what was put after it (by another thread) goes to a
        spool file. A journaled lane's writer is gone by now, a plain one's drains it."""
        if self._journal is None:
            return True
        with self._journal.lock:
            return self._spooler.spool_at_exit(self._queued_ops([]))

    def _queued_ops(self, ops: list[Operation]) -> list[Operation]:
        """``ops`` then everything queued (spilled items included), as operations."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            overflow, self._overflow = self._overflow, None
            self._fast = False
        if overflow is not None:
            items.extend(overflow.read())
        self.batcher.extend(ops, items)
        return ops

    def _close_journal(self, part: JournalPart, spooled: bool) -> None:
        """Remove the journal when nothing in it is left to deliver; else keep it for
        the next process or ``mlhooks sync`` (its cursor says where to go on)."""
        window = part.window
        if spooled and not self._deliverer.abandoned and window.pending() == 0:
            part.close(remove=True)
        elif spooled and self._deliverer.abandoned:
            part.delivered(window.end)  # everything not stored is in the exit spool
            part.close(remove=True)
        else:
            part.close(remove=False)


def _journal_part(lane: Lane) -> JournalPart:
    assert lane.journal_dir is not None
    return JournalPart(lane, lane.journal_dir, lane.queue_limit)


_LANES: weakref.WeakSet[Lane] = weakref.WeakSet()


def flush_lanes(lanes: Iterable[Lane], timeout: float | None = None) -> bool:
    """Flush ``lanes``; True when all of them finished within ``timeout`` in total."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for lane in list(lanes):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = lane.flush(left) and ok
    return ok


SETTLE_WAIT = 10.0
"""Seconds a closing lane waits to learn whether its service could be started."""


def _exit_timeout() -> float:
    timeout: float = setting_or_default("MLHOOKS_EXIT_TIMEOUT")
    return timeout


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + _exit_timeout()  # one budget for all lanes
    folders = set()
    for lane in list(_LANES):
        lane.close(max(0.0, deadline - time.monotonic()))
        if lane.journal_dir is not None:
            folders.add(lane.journal_dir)
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: a journal kept for later stays


def _reset_in_child() -> None:
    # The parent's threads do not exist in a forked child, and the parent still owns
    # what it queued: the child starts with empty lanes.
    journaler.reset_in_child()
    for lane in list(_LANES):
        lane._reset()
        try:
            lane.backend.after_fork()
        except Exception as error:  # noqa: BLE001 - a backend bug must not kill the child
            report_background_error(f"after_fork of backend {lane.backend.name!r}", error)


at_exit(_close_all_at_exit, Stage.LANES)
in_forked_child(_reset_in_child, Stage.LANES)
