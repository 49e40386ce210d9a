"""Storing a lane's operations on its backend, in order, without ever losing one.

Each operation is applied with retries (``delays`` between attempts). One the backend
rejects for good (``Backend.is_retryable`` says no) is set aside at once; once the
retries are used up, or as soon as the backend is known down (its :class:`~.reachability.
Watch` found it unreachable), it and everything after it go to the spool (see
:mod:`.spooler`), and so does everything that comes while the backend is down. What
can be neither stored nor spooled (a full disk) is held and tried first on the next
round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mlhooks.backends.base import Backend, LogBatch, Operation, unbundled
from mlhooks.core.errors import (
    background_failures,
    is_strict,
    report_background_error,
    warn_background,
)
from mlhooks.delivery.isolation import NotStoredYet, apply_isolating
from mlhooks.delivery.reachability import Watch
from mlhooks.delivery.spooler import Spooler
from mlhooks.delivery.staging import release_snapshot


class Deliverer:
    """Hands operations to ``backend``, or to its ``spooler`` when the backend is down.

    ``closing`` is set when the process exits: retries stop then."""

    def __init__(
        self,
        backend: Backend,
        spooler: Spooler,
        delays: tuple[float, ...],
        closing: threading.Event,
        holds_work: Callable[[], bool] | None = None,
    ) -> None:
        self.backend = backend
        self.spooler = spooler
        self.delays = delays
        self._closing = closing
        self.watch = Watch(backend, spooler, closing, holds_work)
        """Asks the backend whether it answers while a delivery is slow."""
        self._inflight: list[Operation] = []
        """The operations of the current round not stored yet."""
        self._held: list[Operation] = []
        """Operations that could be neither stored nor spooled: first on the next round."""
        self._unstored: list[Operation] = []
        """What is left of the operation being applied (the parts of a split batch)."""
        self._failure: BaseException | None = None
        """Why the last delivery gave up."""
        self._spooling = threading.Lock()
        """Held while the writer spools, so that exit takes each operation once."""
        self._abandoned = threading.Event()

    @property
    def abandoned(self) -> bool:
        """True once exit has spooled what was not stored (see :meth:`abandon`)."""
        return self._abandoned.is_set()

    def deliver(self, ops: list[Operation]) -> bool:
        """Store ``ops`` (or spool them); False when they could be neither, in which
        case they are kept and tried again first on the next round."""
        self.spooler.set_aside_waiting()  # first what was refused before, in order
        ops = self._held + ops
        self._held = []
        for index, op in enumerate(ops):
            if self._abandoned.is_set():
                return False  # exit spooled what is left
            self._inflight = ops[index:]
            self._unstored = [op]
            if not self.spooler.is_down and self._apply_with_retry(op, ops[index + 1 :]):
                continue
            # A split batch's stored part is not in it; a bundle goes as its operations.
            left = unbundled(self._unstored + ops[index + 1 :])
            if not (self.spooler.is_down or self._closing.is_set()):
                self.watch.ask_now()  # retries used up: unreachable, or failing?
            with self._spooling:
                if self._abandoned.is_set():
                    return False  # exit spooled what is left while we retried
                try:
                    self.spooler.append(left, self._failure, self.watch.failing_since)
                except Exception as error:  # noqa: BLE001 - disk full, unwritable folder
                    self._held = left
                    self._cannot_spool(error)
                    return False
                self._inflight = []
            self.watch.failing_since = None  # told: the next outage has a time of its own
            break
        self._inflight = []
        return True

    def _cannot_spool(self, error: BaseException) -> None:
        """Tell once that what the backend did not take cannot be spooled either: it is
        held, not skipped (see :meth:`deliver`)."""
        name = self.backend.name
        if is_strict():
            background_failures.append(
                f"spool of backend {name!r}: {type(error).__name__}: {error}"
            )
        failure = self._failure
        why = f" ({type(failure).__name__}: {failure})" if failure is not None else ""
        warn_background(
            f"spool of backend {name!r}:{type(error).__name__}",
            f"mlhooks: backend {name!r} ({self.backend.describe()}) did not take some "
            f"operations{why}, and the spool of backend {name!r} in "
            f"{self.spooler.directory} cannot be written ({type(error).__name__}: {error}): "
            "they are kept, in order (in memory, and in the journal when there is one), "
            "and tried again (stored, or spooled) at the writer's next round. Training is "
            "not affected.",
        )

    def _apply_with_retry(self, op: Operation, after: list[Operation]) -> bool:
        """Apply ``op``; True when stored (what the backend refuses for good in it set
        aside), False to spool. A retry applies only what was not stored yet: the part
        of a split batch that was stored is not applied twice."""
        delays = self.delays
        remaining = [op]
        self._failure = None
        self.watch.begin()
        answered = False
        try:
            for attempt in range(len(delays) + 1):
                try:
                    apply_isolating(self.backend, remaining, self.spooler.reject, release_snapshot)
                    answered = True
                    return True
                except NotStoredYet as failure:
                    error, remaining = failure.error, failure.remaining
                    self._inflight = remaining + after  # what exit would spool, once each
                    self.watch.failed()
                    last = attempt == len(delays) or self._closing.is_set()
                    if last or not self._pause(delays[attempt]):
                        self._failure = error
                        self._unstored = remaining
                        return False
            return False  # pragma: no cover
        finally:
            self.watch.end(answered)

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before the next attempt; False when the backend is found
        down meanwhile (no point in trying again before a probe says it is back)."""
        deadline = time.monotonic() + seconds
        while not self.spooler.is_down:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    def forget_held(self) -> None:
        """Drop what :meth:`deliver` holds after a round that could neither store nor
        spool: for a journaled lane, whose window keeps it and offers it again."""
        self._held = []

    def flush_backend(self) -> bool:
        """Ask the backend to make what it stored durable; True when it did, or when
        the backend is down (what it did not take is spooled durably)."""
        self.spooler.set_aside_waiting()
        if self.spooler.is_down:
            return True  # spooled durably; stored once the backend is back
        try:
            self.backend.flush()
            return True
        except Exception as error:  # noqa: BLE001
            report_background_error(f"flush of backend {self.backend.name!r}", error)
            return False

    def abandon(self) -> list[Operation]:
        """At exit with a stuck backend: stop, and return what is not stored yet (the
        writer thread, if it wakes up, finds the delivery abandoned and leaves it)."""
        spooling = self._spooling.acquire(timeout=1.0)  # a spool being written: let it end
        try:
            self._abandoned.set()
            # Copies: what exit adds to them must not reach a write still in flight.
            return [_copy(op) for op in unbundled(self._inflight or self._held)]
        finally:
            if spooling:
                self._spooling.release()


def _copy(op: Operation) -> Operation:
    """``op``, or for a batch (which later items may be merged into) a copy of it."""
    if isinstance(op, LogBatch):
        return LogBatch(op.run_id, list(op.metrics), dict(op.params), dict(op.tags))
    return op
