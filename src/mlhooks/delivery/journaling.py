"""A journaled lane's two halves: the journal thread writes, the lane's writer delivers.

One journal thread serves every journaled lane of the process. It wakes every
``MLHOOKS_JOURNAL_INTERVAL`` seconds (0.5 by default, also while a fit trains: it costs
a marshal and a write per round) or when a lane's queue holds a full batch, takes what
the training thread queued, batches it, appends it to the lane's journal
(:mod:`.journal`) and puts it in the lane's :class:`Window`. The lane's writer delivers
from the window at its own pace and moves the journal's cursor after each operation.

The window keeps at most ``limit`` entries in memory; past that, operations stay on
disk only, and the writer reads them back from the journal, in order, when it gets
there. Memory stays bounded at any rate, and the journal is the only copy.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from mlhooks.backends.base import EndRun, LogBatch, Operation, StartRun
from mlhooks.core import settings
from mlhooks.core.errors import report_background_error, warn_background
from mlhooks.delivery.batching import Batcher, FlushMarker
from mlhooks.delivery.journal import JournalFile, JournalWriter

ROTATE_BYTES = 64 * 2**20
"""A journal whose operations were all delivered starts a new file past this size."""


def _weight(op: Operation) -> int:
    return len(op) if type(op) is LogBatch else 1


class Window:
    """A journaled lane's operations between the journal and the backend, in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.memory: deque[tuple[int, Operation]] = deque()
        self.weight = 0
        """Metric points and other entries held in ``memory``."""
        self.disk_from: int | None = None
        """Index of the first operation held only on disk (after everything in memory)."""
        self.disk_offset = 0
        self.end = 0
        """Index of the next operation to come."""
        self.delivered = 0
        self.markers: deque[tuple[int, FlushMarker]] = deque()

    @property
    def empty(self) -> bool:
        return not self.memory and self.disk_from is None

    def pending(self) -> int:
        return self.end - self.delivered

    def due_markers(self) -> list[FlushMarker]:
        """Flush markers whose operations before them are all delivered."""
        due = []
        with self.lock:
            while self.markers and self.markers[0][0] <= self.delivered:
                due.append(self.markers.popleft()[1])
        return due

    def all_markers(self) -> list[FlushMarker]:
        with self.lock:
            markers = [marker for _, marker in self.markers]
            self.markers.clear()
        return markers


class JournalPart:
    """The journal side of one lane: what the journal thread does for it."""

    def __init__(self, lane: Any, directory: Path, limit: int) -> None:
        self.lane = lane
        self.directory = directory
        self.window = Window(limit)
        self.batcher = Batcher(lane.backend.max_batch_size)
        self.writer: JournalWriter | None = None
        self.failing = False
        self.open_runs: dict[str, None] = {}
        self.lock = threading.Lock()
        """Held while the journal thread writes, so that exit does not close under it."""
        self._offsets: dict[int, int] = {}
        """Where each operation the writer last read from disk ends in the journal."""
        self.remote = False
        """True while the writer service delivers this journal: every operation goes to
        disk only, nothing is kept in memory, and this process never moves the cursor."""
        self.unwritten: list[Operation] = []
        """Remote: operations the journal could not take yet (a full disk), in order."""
        self._leaving = False

    # -- journal thread -------------------------------------------------------------------

    def round(self) -> bool:
        """Journal what the lane's queue holds; True when the lane's writer should wake
        (a flush waits, or a full batch is ready)."""
        with self.lock:
            if self.lane._closing.is_set():
                return False  # exit took over: what comes now goes to a spool
            return self._round()

    def _round(self) -> bool:
        if self.remote:
            self._remote_round()
            return False
        window = self.window
        if self.failing and window.disk_from is not None:
            return False  # what came must wait behind the part on disk
        if self.failing and window.weight >= window.limit:
            return False  # the queue (and its spill file) keeps it meanwhile
        items = self.lane._take_queued()
        if not items:
            self._maybe_rotate()
            return False
        wake = False
        for ops, marker in self.batcher.segments(items):
            if ops:
                self._journal(ops)
            if marker is not None:
                with window.lock:
                    window.markers.append((window.end, marker))
                self.lane.pacer.urgent = True  # someone waits: the writer must not rest
                wake = True
        return wake or window.weight >= self.lane.backend.max_batch_size

    def _remote_round(self) -> None:
        """Journal what was queued for the writer service, which reads it from disk.
        What the disk refuses waits, in order, and is tried first next round."""
        if self.unwritten and not self._append_remote(self.unwritten):
            return  # the queue (and its spill file) keeps what comes meanwhile
        self.unwritten = []
        items = self.lane._take_queued()
        if not items:
            return
        ops: list[Operation] = []
        for segment, marker in self.batcher.segments(items):
            ops.extend(segment)
            if marker is not None:  # a remote lane's flush asks the service instead
                marker.ok = False
                marker.done.set()
        if ops and not self._append_remote(ops):
            self.unwritten = ops
            return
        if ops:
            self.lane.service.wake()

    def _append_remote(self, ops: list[Operation]) -> bool:
        self._track_open_runs(ops)
        try:
            if self.writer is None:
                self.writer = JournalWriter(self.directory, self.lane.backend, deliver_here=False)
                self.writer.written = self.window.end
                self.lane.service.attach(self.lane, self.writer.path)
            self.writer.append(ops)
        except OSError as error:
            self._failed(error, 0)
            if not self._leaving:  # the service reads only the journal: deliver here
                self._leaving = True
                threading.Thread(
                    target=self.lane.leave_service, name="mlhooks-leave-service", daemon=True
                ).start()
            return False
        if self.failing:
            self.failing = False
            warn_background(
                f"journal-back:{self.lane.backend.name}",
                f"mlhooks: the journal of backend {self.lane.backend.name!r} is written again.",
            )
        self.window.end += len(ops)
        return True

    def _track_open_runs(self, ops: list[Operation]) -> None:
        for op in ops:
            if type(op) is StartRun:
                self.open_runs[op.run.run_id] = None
            elif type(op) is EndRun:
                self.open_runs.pop(op.run_id, None)

    def go_local(self, timeout: float) -> None:
        """The writer service cannot deliver this journal: this process's writer does
        from now on, from where the service's cursor stands (the operations past it are
        read back from disk). Waits up to ``timeout`` seconds for the service to let go."""
        with self.lock:
            if not self.remote:
                return
            writer, window = self.writer, self.window
            if writer is not None:
                if not writer.take_delivery(timeout):
                    report_background_error(
                        f"take-over of the journal of {self.lane.backend.name!r}",
                        TimeoutError("the writer service still holds its cursor"),
                    )
                journal = JournalFile(writer.path)
                cursor = journal.delivered()
                with window.lock:
                    window.delivered = cursor
                    offset = journal.offset_of(cursor) if cursor < window.end else None
                    if offset is not None:
                        window.disk_from, window.disk_offset = cursor, offset
            self.remote = False
            unwritten, self.unwritten = self.unwritten, []
            if unwritten:
                self._journal(unwritten)

    def take_back(self) -> None:
        """Remote, once the service stored all the journal holds: this process's writer
        delivers what comes next, from memory (the journal cannot be written)."""
        with self.lock:
            window = self.window
            if self.writer is not None:
                self.writer.close(remove=False)  # the service removes it once it is done
                self.writer = None
            with window.lock:
                window.delivered = window.end
                window.disk_from = None
            self.remote = False
            unwritten, self.unwritten = self.unwritten, []
            if unwritten:
                self._journal(unwritten)

    def _journal(self, ops: list[Operation]) -> None:
        self._track_open_runs(ops)
        window = self.window
        offset = None
        try:
            if self.writer is None:
                self.writer = JournalWriter(self.directory, self.lane.backend)
                self.writer.written = window.end
                self.writer.save_cursor(window.delivered)
            offset = self.writer.size
            self.writer.append(ops)
            if self.failing:
                self.failing = False
                warn_background(
                    f"journal-back:{self.lane.backend.name}",
                    f"mlhooks: the journal of backend {self.lane.backend.name!r} is written again.",
                )
        except OSError as error:
            offset = None
            self._failed(error, len(ops))
        with window.lock:
            first = window.end
            window.end += len(ops)
            full = window.disk_from is not None or window.weight >= window.limit
            if offset is not None and full:
                if window.disk_from is None:
                    window.disk_from, window.disk_offset = first, offset
                return  # on disk only, read back by the writer when it gets there
            for index, op in enumerate(ops, start=first):
                window.memory.append((index, op))
                window.weight += _weight(op)

    def _failed(self, error: OSError, count: int) -> None:
        """A full or read-only disk: the operations go on in memory, without a journal
        (as they would without one), until a write works again."""
        if self.writer is not None:
            self.writer.written += count  # their indexes stay unused on disk
        if not self.failing:
            self.failing = True
            warn_background(
                f"journal-failing:{self.lane.backend.name}",
                f"mlhooks: cannot write the journal of backend {self.lane.backend.name!r} "
                f"in {self.directory} ({error}); its data is kept in memory until the "
                "backend stores it (a killed process would lose it). Training is not "
                "affected.",
            )

    def _maybe_rotate(self) -> None:
        writer, window = self.writer, self.window
        if writer is None or writer.size < ROTATE_BYTES or self.remote:
            return
        with window.lock:
            if window.delivered != window.end or window.disk_from is not None:
                return
            try:
                writer.rotate(list(self.open_runs))
            except OSError as error:
                report_background_error(f"journal of {self.lane.backend.name!r}", error)

    # -- the lane's writer ---------------------------------------------------------------

    def delivered(self, upto: int) -> None:
        """Operations before index ``upto`` are stored (or spooled, or set aside): they
        leave the window, and the journal's cursor moves past them."""
        window = self.window
        with window.lock:
            window.delivered = upto
            memory = window.memory
            while memory and memory[0][0] < upto:
                window.weight -= _weight(memory.popleft()[1])
            if window.disk_from is not None and upto > window.disk_from:
                offset = self._offsets.get(upto - 1)
                if upto >= window.end:
                    window.disk_from = None
                elif offset is not None:
                    window.disk_from, window.disk_offset = upto, offset
            if self.writer is not None:
                try:
                    self.writer.save_cursor(upto)
                except OSError as error:
                    report_background_error(f"journal cursor of {self.lane.backend.name!r}", error)

    def take(self, most: int = 10_000) -> list[tuple[int, Operation]]:
        """The next operations to deliver, oldest first, from memory, else from disk.
        They stay in the window until :meth:`delivered` says they are stored: what the
        writer holds is never only in the writer (exit spools it from the window)."""
        window = self.window
        with window.lock:
            if window.memory:
                taken = []
                weight = 0
                for entry in window.memory:
                    taken.append(entry)
                    weight += _weight(entry[1])
                    if weight >= most:
                        break
                return taken
            if window.disk_from is None or self.writer is None:
                return []
            offset, end, path = window.disk_offset, window.end, self.writer.path
        taken = []
        weight = 0
        self._offsets = {}
        for index, op, after in JournalFile(path).records(offset):
            if index >= end:
                break
            taken.append((index, op))
            self._offsets[index] = after
            weight += _weight(op)
            if weight >= most:
                break
        return taken

    def leftovers(self) -> list[Operation]:
        """At exit with a stuck backend: everything not delivered, in order."""
        window = self.window
        with window.lock:
            ops = [op for _, op in window.memory]
            disk = window.disk_from is not None and self.writer is not None
            offset, end = window.disk_offset, window.end
        if disk and self.writer is not None:
            for index, op, _ in JournalFile(self.writer.path).records(offset):
                if index >= end:
                    break
                ops.append(op)
        return ops

    def close(self, remove: bool) -> None:
        """Close the journal at exit; ``remove`` it when nothing in it is left to deliver."""
        with self.lock:
            if self.writer is not None:
                self.writer.close(remove)
                self.writer = None

    def drop_in_child(self) -> None:
        if self.writer is not None:
            self.writer.drop_in_child()
            self.writer = None


class Journaler:
    """The journal thread of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.parts: weakref.WeakSet[JournalPart] = weakref.WeakSet()
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.interval: float = settings.get("MLHOOKS_JOURNAL_INTERVAL")

    def add(self, part: JournalPart) -> None:
        self.parts.add(part)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="mlhooks-journal", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            self.round()

    def round(self) -> None:
        """Journal every lane's queue now (the thread does it every interval)."""
        for part in list(self.parts):
            try:
                if part.round():
                    part.lane._wake.set()
            except BaseException as error:  # noqa: BLE001 - the journal thread must survive
                report_background_error("journal thread", error)

    def reset_in_child(self) -> None:
        self.parts = weakref.WeakSet()
        self.wake = threading.Event()
        self._thread = None
        self._lock = threading.Lock()


journaler = Journaler()
