"""The background writer: the training thread enqueues, one thread per backend stores.

Each backend gets a :class:`Lane`: an in-memory queue, a writer thread, retries with
backoff, and a spool file for when the backend stays down. A slow or broken backend
only ever delays its own lane.

* ``put`` is all the training thread does: a ``deque.append`` (metric points are plain
  tuples). Past ``queue_limit`` items, new items spill to a file on disk instead, so
  memory stays bounded at any rate, and the writer reads the file back in order.
* The writer merges consecutive metrics, params and tags of one run into one
  ``LogBatch`` of at most ``backend.max_batch_size`` entries.
* A failing operation is retried with backoff; if it still fails, it and everything
  after it go to a spool file; every ``probe_interval`` seconds the writer replays the
  spool, and once that works the lane is live again. Nothing is dropped: an operation
  the backend rejects outright lands in a spool of its own for ``mlhooks sync``.
* ``flush`` waits until everything put before it is stored (or safely spooled).
  Interpreter exit flushes; whatever a stuck backend still holds then is spooled.
* After ``os.fork()`` the child starts with empty lanes and fresh threads.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlhooks.backends.base import Backend, BackendError, LogArtifact, LogBatch, LogModel, Operation
from mlhooks.core import activity, settings
from mlhooks.core.errors import (
    background_failures,
    is_strict,
    report_background_error,
    setting_or_default,
    warn_background,
)
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child
from mlhooks.delivery import spool as spool_io
from mlhooks.delivery import staging

log = logging.getLogger(__name__)

#: A metric point as the training thread enqueues it: (run_id, key, value, step, timestamp).
MetricItem = tuple[str, str, float, int, int]


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


def _release_snapshot(op: Operation) -> None:
    """This lane is done with the staged file ``op`` refers to, if any."""
    if isinstance(op, LogArtifact):
        staging.release(op.local_path)
    elif isinstance(op, LogModel) and op.model.path is not None:
        staging.release(op.model.path)


class _FlushMarker:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class _Overflow:
    """Items that did not fit in memory, in a temporary file, in order.

    Metric tuples (the bulk) are pickled in chunks: a C-speed dump of a list, cheap
    on the training thread, and always picklable. Anything else (operations, flush
    markers) is rare and may hold what pickle refuses: it stays in memory, and the file
    keeps its place.
    """

    chunk_size = 10_000

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="overflow-", suffix=".pickle", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._chunk: list[Any] = []
        self.kept: dict[int, Any] = {}

    def write(self, item: Any) -> None:
        if type(item) is not tuple:
            self.kept[id(item)] = item
            item = (_PLACEHOLDER, id(item))
        self._chunk.append(item)
        if len(self._chunk) >= self.chunk_size:
            self._dump()

    def _dump(self) -> None:
        if self._chunk:
            pickle.dump(self._chunk, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._chunk = []

    def read(self) -> Iterator[Any]:
        self._dump()
        self._file.close()
        with open(self.path, "rb") as f:
            while True:
                try:
                    chunk = pickle.load(f)  # our own file, written above
                except EOFError:
                    break
                for item in chunk:
                    if item[0] == _PLACEHOLDER:
                        yield self.kept.pop(item[1])
                    else:
                        yield item
        self.path.unlink(missing_ok=True)


_PLACEHOLDER = "\x00mlhooks-kept-in-memory"


class Lane:
    """One backend's queue, writer thread, retries and spool."""

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
    ) -> None:
        self.backend = backend
        self.spool_dir = spool_dir
        self.queue_limit = queue_limit
        self.retry = retry or RetryPolicy()
        self.interval = interval if interval is not None else backend.write_interval
        self._full = backend.max_batch_size
        self.busy_factor = busy_factor
        """After a round of writing that took t seconds, the writer rests at least
        ``busy_factor * t`` (at most ``max_interval``) unless a flush asks: it holds
        the GIL at most about 1 / (1 + busy_factor) of the time, so training threads
        (XGBoost, torch: native code that releases the GIL) are not slowed by a
        Python-heavy backend such as MLflow's, and batches grow instead."""
        self.max_interval = max(max_interval, self.interval)
        self.training_interval = 10.0
        """While a tracked fit runs in the process, the writer writes at most this often
        (unless a flush asks, or items spilled to disk): a short fit's data is stored
        right after it, a long one's every few seconds, and meanwhile the writer does
        not compete with training for the CPU and the GIL."""
        self._reset()
        _LANES.add(self)

    def _reset(self) -> None:
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._overflow: _Overflow | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._inflight: list[Operation] = []
        self._held: list[Operation] = []
        self._abandoned = False
        self._spool: spool_io.SpoolWriter | None = None
        self._rejected: spool_io.SpoolWriter | None = None
        self._next_probe = 0.0
        self._probe_interval = self.retry.probe_interval
        self._fast = False
        """True once the writer runs and nothing is spilled: put() just appends."""
        self._urgent = False
        """A flush is waiting: write now, even while training."""

    # -- training thread --------------------------------------------------------------

    def put(self, item: Operation | MetricItem) -> None:
        """Enqueue an operation or a metric tuple. Never blocks on the backend."""
        queue = self._queue
        if self._fast and len(queue) < self.queue_limit:
            queue.append(item)
            if len(queue) == self._full:  # a full batch need not wait
                self._wake.set()
        else:
            self._put_slow(item)

    def _put_slow(self, item: Any) -> None:
        """First put (starts the writer), memory full (spills to disk in order), or the
        lane closed at exit (straight to a spool file)."""
        if self._closing:
            if not isinstance(item, _FlushMarker):
                ops: list[Operation] = []
                self._add(ops, item)
                self._write_spool_now(ops)
            else:
                item.done.set()
            return
        if self._thread is None:
            self._start()
        with self._lock:
            if self._overflow is None:
                if len(self._queue) < self.queue_limit:
                    self._queue.append(item)
                    self._fast = True
                    return
                self._overflow = _Overflow(self.spool_dir / "overflow")
                self._fast = False
            self._overflow.write(item)
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put before this call is stored or spooled."""
        if self._thread is None and not self._queue and self._overflow is None:
            return True
        marker = _FlushMarker()
        self.put(marker)  # type: ignore[arg-type]
        self._urgent = True
        self._wake.set()
        return marker.done.wait(timeout) and marker.ok

    @property
    def pending(self) -> int:
        """Items waiting in memory (not counting spilled ones)."""
        return len(self._queue)

    @property
    def abandoned(self) -> bool:
        """True once exit has spooled what this lane had not stored."""
        return self._abandoned

    @property
    def is_down(self) -> bool:
        """True while the backend fails and operations go to the spool."""
        return self._spool is not None

    # -- writer thread ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name=f"mlhooks-writer-{self.backend.name}", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        rest = self.interval
        last = time.monotonic()
        while True:
            self._wake.wait(self._wait_time(rest))
            self._wake.clear()
            if self._yields_to_training(last):
                rest = self.interval  # look again soon: the fit may end
                continue
            self._urgent = False
            started = last = time.monotonic()
            try:
                self._drain()
                if self._spool is not None and time.monotonic() >= self._next_probe:
                    self._probe()
            except BaseException as error:  # noqa: BLE001 - the writer must survive
                report_background_error("background writer", error)
            if self._closing and not self._queue and self._overflow is None:
                return
            busy = time.monotonic() - started
            rest = min(self.max_interval, max(self.interval, busy * self.busy_factor))

    def _yields_to_training(self, last: float) -> bool:
        return (
            activity.training()
            and not self._urgent
            and not self._closing
            and self._overflow is None
            and self._spool is None
            and time.monotonic() - last < self.training_interval
        )

    def _wait_time(self, rest: float) -> float:
        if self._spool is None:
            return rest
        return max(0.0, min(self.interval * 20, self._next_probe - time.monotonic()))

    def _drain(self) -> None:
        while True:
            if self._queue:
                self._process(self._take_from_memory())
                if self._caught_up():
                    return  # what came meanwhile waits for the next round, in one batch
                continue
            with self._lock:
                overflow, self._overflow = self._overflow, None
                self._fast = self._thread is not None
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
            not self._closing
            and self._overflow is None
            and len(self._queue) < self.backend.max_batch_size
        )

    def _take_from_memory(self, most: int = 10_000) -> list[Any]:
        queue = self._queue
        items = []
        for _ in range(min(most, len(queue))):
            items.append(queue.popleft())
        return items

    def _process(self, items: list[Any]) -> None:
        """Store a run of queued items: batch, deliver, release flush markers."""
        ops: list[Operation] = []
        index, count = 0, len(items)
        while index < count:
            item = items[index]
            if type(item) is tuple:  # a run of metric points of one run: the bulk
                run_id = item[0]
                end = index + 1
                while end < count and type(items[end]) is tuple and items[end][0] == run_id:
                    end += 1
                self._add_points(ops, run_id, [point[1:] for point in items[index:end]])
                index = end
                continue
            if isinstance(item, _FlushMarker):
                try:
                    item.ok = self._deliver(ops) and self._flush_backend()
                finally:
                    item.done.set()
                ops = []
            else:
                self._add(ops, item)
            index += 1
        self._deliver(ops)

    def _add_points(self, ops: list[Operation], run_id: str, points: list[Any]) -> None:
        """Append metric points, filling the last batch of the run up to the limit."""
        limit = self.backend.max_batch_size
        last = ops[-1] if ops else None
        if isinstance(last, LogBatch) and last.run_id == run_id and len(last) < limit:
            room = limit - len(last)
            last.metrics.extend(points[:room])
            points = points[room:]
        for start in range(0, len(points), limit):
            ops.append(LogBatch(run_id, points[start : start + limit]))

    def _add(self, ops: list[Operation], item: Any) -> None:
        """Append ``item`` to ``ops``, merging it into the last batch when it can."""
        if type(item) is tuple:
            self._add_points(ops, item[0], [item[1:]])
            return
        last = ops[-1] if ops else None
        if (
            isinstance(item, LogBatch)
            and isinstance(last, LogBatch)
            and last.run_id == item.run_id
            and len(last) + len(item) <= self.backend.max_batch_size
            and not (last.params.keys() & item.params.keys())
        ):
            last.metrics.extend(item.metrics)
            last.params.update(item.params)
            last.tags.update(item.tags)
        elif isinstance(item, LogBatch):
            # A private copy: the queued batch may sit on other lanes too, and later
            # items merge into this one.
            ops.append(
                LogBatch(item.run_id, list(item.metrics), dict(item.params), dict(item.tags))
            )
        else:
            ops.append(item)

    def _deliver(self, ops: list[Operation]) -> bool:
        """Store ``ops`` (or spool them); False when they could be neither, in which
        case they are kept and tried again first on the next round."""
        ops = self._held + ops
        self._held = []
        for index, op in enumerate(ops):
            self._inflight = ops[index:]
            if self._spool is None and self._apply_with_retry(op):
                continue
            if self.abandoned:
                return False  # exit spooled what is left while we retried
            try:
                self._spool_ops(ops[index:])
            except Exception as error:  # noqa: BLE001 - disk full, unwritable folder
                self._held = ops[index:]
                report_background_error(f"spool of backend {self.backend.name!r}", error)
                return False
            break
        self._inflight = []
        return True

    def _apply_with_retry(self, op: Operation) -> bool:
        """Apply ``op``; True when stored or set aside as rejected, False to spool."""
        delays = self.retry.delays
        for attempt in range(len(delays) + 1):
            try:
                self.backend.apply(op)
                _release_snapshot(op)
                return True
            except Exception as error:  # noqa: BLE001 - any backend failure
                if not self.backend.is_retryable(error):
                    self._reject(op, error)
                    return True
                if attempt == len(delays) or self._closing:
                    warn_background(
                        f"lane-down:{self.backend.name}",
                        f"mlhooks: backend {self.backend.describe()!r} is failing ({error!r}); "
                        f"spooling to {self.spool_dir} and retrying every "
                        f"{self.retry.probe_interval:g}s. Training is not affected.",
                    )
                    return False
                time.sleep(delays[attempt])
        return False  # pragma: no cover

    def _reject(self, op: Operation, error: BaseException) -> None:
        if not isinstance(error, BackendError) and is_strict():
            # Not a refusal the backend declared: most likely a bug in the backend.
            background_failures.append(f"backend {self.backend.name!r}: {error!r}")
        if self._rejected is None:
            self._rejected = spool_io.SpoolWriter(self.spool_dir / "rejected", self.backend)
        self._rejected.append([op])
        warn_background(
            f"rejected:{self.backend.name}:{type(error).__name__}",
            f"mlhooks: backend {self.backend.name!r} rejected an operation ({error}); "
            f"it was kept in {self._rejected.path}.",
        )

    def _spool_ops(self, ops: list[Operation]) -> None:
        """Append ``ops`` to this lane's spool, opening one (the lane goes down)."""
        if self._spool is None:
            self._spool = spool_io.SpoolWriter(self.spool_dir, self.backend)
            self._probe_interval = self.retry.probe_interval
            self._next_probe = time.monotonic() + self._probe_interval
        self._spool.append(ops)

    def _probe(self) -> None:
        """Try to replay the spool; on success the lane is live again."""
        assert self._spool is not None
        spool_file = spool_io.SpoolFile(self._spool.path)
        if not spool_file.path.exists():  # replayed by `mlhooks sync --force`
            self._spool.close()
            self._spool = None  # nothing new since: the next failure opens another
            return
        try:
            spool_io.replay(
                spool_file, self.backend, reject=self._reject, applied=_release_snapshot
            )
        except Exception as error:  # noqa: BLE001 - still down
            log.debug("backend %s still down: %r", self.backend.name, error)
            self._probe_interval = min(self._probe_interval * 2, self.retry.max_probe_interval)
            self._next_probe = time.monotonic() + self._probe_interval
            return
        self._spool.close()
        self._spool = None
        log.info("backend %s is back; spool replayed", self.backend.name)

    def _flush_backend(self) -> bool:
        if self._spool is not None:
            return True  # spooled durably; stored once the backend is back
        try:
            self.backend.flush()
            return True
        except Exception as error:  # noqa: BLE001
            report_background_error(f"flush of backend {self.backend.name!r}", error)
            return False

    # -- shutdown -----------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Flush within ``timeout`` seconds; spool whatever is still not stored."""
        flushed = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._fast = False  # later puts take the slow path, straight to a spool
        self._wake.set()
        if not flushed:
            self._spool_leftovers()
        try:
            self.backend.close()
        except Exception as error:  # noqa: BLE001
            report_background_error(f"close of backend {self.backend.name!r}", error)

    def _spool_leftovers(self) -> None:
        """At exit with a stuck backend: put everything not stored into a spool file.
        (The writer, if it wakes up, finds the lane abandoned and leaves it alone.)"""
        self._abandoned = True
        ops: list[Operation] = list(self._inflight or self._held)
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            overflow, self._overflow = self._overflow, None
            self._fast = False
        if overflow is not None:
            items.extend(overflow.read())
        for item in items:
            if not isinstance(item, _FlushMarker):
                self._add(ops, item)
        self._write_spool_now(ops)

    def _write_spool_now(self, ops: list[Operation]) -> None:
        if not ops:
            return
        try:
            writer = spool_io.SpoolWriter(self.spool_dir, self.backend)
            writer.append(ops)
            writer.close()
        except Exception as error:  # noqa: BLE001 - nowhere left to put them
            report_background_error(
                f"spool of {len(ops)} unstored operations for {self.backend.name!r}", error
            )
            return
        warn_background(
            f"exit-spool:{self.backend.name}",
            f"mlhooks: {len(ops)} operations for {self.backend.describe()!r} were not "
            f"stored before exit; they are in {writer.path}. Run `mlhooks sync`.",
        )


_LANES: weakref.WeakSet[Lane] = weakref.WeakSet()


def flush_lanes(lanes: Iterable[Lane], timeout: float | None = None) -> bool:
    """Flush ``lanes``; True when all of them finished within ``timeout`` in total."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for lane in list(lanes):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = lane.flush(left) and ok
    return ok


def _exit_timeout() -> float:
    timeout: float = setting_or_default("MLHOOKS_EXIT_TIMEOUT")
    return timeout


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + _exit_timeout()  # one budget for all lanes
    for lane in list(_LANES):
        lane.close(max(0.0, deadline - time.monotonic()))


def _reset_in_child() -> None:
    # The parent's threads do not exist in a forked child, and the parent still owns
    # what it queued: the child starts with empty lanes.
    for lane in list(_LANES):
        lane._reset()
        try:
            lane.backend.after_fork()
        except Exception as error:  # noqa: BLE001 - a backend bug must not kill the child
            report_background_error(f"after_fork of backend {lane.backend.name!r}", error)


at_exit(_close_all_at_exit, Stage.LANES)
in_forked_child(_reset_in_child, Stage.LANES)
