"""Noticing within seconds that a backend stopped answering.

A backend's client may retry a request for minutes before it fails, and a writer rests
for seconds between rounds while a fit trains: waiting for a write to fail would tell
the user late, and make runs that end meanwhile wait. A :class:`Watch` keeps the
record of one lane's deliveries (when one began, when an attempt failed, when the
backend last answered) and, for a backend that can tell
(:meth:`~mlhooks.backends.base.Backend.reachable`), asks it from a thread of its own:

* while a delivery, with its retries, has taken more than ``slow_after`` seconds
  (every ``busy_every`` seconds), or
* while the backend has not answered for ``quiet_after`` seconds although the lane
  delivered to it in the last ``recent`` seconds and still holds something to store
  (the writer yields to a fit). A lane with nothing left to store does not ask: a
  server that goes away then (a user closing ``mlflow ui`` after a run) puts nothing
  at risk, and the next delivery finds out.

An unreachable backend is reported to the lane's spooler, which warns and spools from
then on; while it is down, the writer's own probes find out when it is back (see
:mod:`.spooler`), and the watch goes on from there as after a delivery. A backend whose
``reachable()`` says None is not watched, and an idle lane's watch sleeps until the
next delivery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from mlhooks.backends.base import Backend
from mlhooks.core.errors import report_background_error


class Outages(Protocol):
    """Where a watch reports (the lane's spooler)."""

    @property
    def is_down(self) -> bool: ...

    def unreachable(self, since: float) -> None: ...


class Watch:
    """The record of one lane's deliveries, and the thread that asks its backend."""

    tick = 0.25
    slow_after = 0.5
    busy_every = 1.0
    quiet_after = 1.0
    recent = 30.0

    def __init__(
        self,
        backend: Backend,
        outages: Outages,
        closing: threading.Event,
        holds_work: Callable[[], bool] | None = None,
    ) -> None:
        self.backend = backend
        self.outages = outages
        self._closing = closing
        self._holds_work = holds_work or (lambda: True)
        """Whether the lane holds something not stored yet (without it: always)."""
        self.watching = type(backend).reachable is not Backend.reachable
        """False for a backend that cannot tell (and once it said None)."""
        self._thread: threading.Thread | None = None
        self._woken = threading.Event()
        self._busy_since: float | None = None
        """``time.monotonic()`` when the current delivery began; None between them."""
        self._busy_wall = 0.0
        self.failing_since: float | None = None
        """``time.time()`` of the first failed attempt since the backend last answered."""
        self._answered = time.monotonic()
        self._used = 0.0
        self._checked = 0.0

    @property
    def thread(self) -> threading.Thread | None:
        """The watch's thread, once started."""
        return self._thread

    # -- the writer thread -------------------------------------------------------------

    def begin(self) -> None:
        """A delivery (an operation, with its retries) begins."""
        now = time.monotonic()
        self._busy_since, self._busy_wall, self._used = now, time.time(), now
        if self.watching:
            if self._thread is None:
                self._start()
            self._woken.set()

    def failed(self) -> None:
        """An attempt of the current delivery failed."""
        if self.failing_since is None:
            self.failing_since = time.time()

    def ask_now(self) -> None:
        """The writer gives up on a delivery: ask the backend (if it can tell) whether
        it answers at all, so that an unreachable one is reported as such."""
        if not self.watching:
            return
        try:
            self._ask(time.time())
        except Exception as error:  # noqa: BLE001 - a backend's bug: it is failing, then
            report_background_error(f"reachability check of {self.backend.name!r}", error)
            self.watching = False

    def end(self, answered: bool) -> None:
        """The delivery is over; ``answered``: the backend took (or refused) it."""
        self._busy_since = None
        if answered:
            self._answered = time.monotonic()
            self.failing_since = None

    # -- the watch's thread ------------------------------------------------------------

    def _start(self) -> None:
        thread = threading.Thread(
            target=self._run, name=f"mlhooks-watch-{self.backend.name}", daemon=True
        )
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        try:
            self._ask(time.time())  # at once: down from the start? can it tell at all?
            was_down = False
            while self.watching and not self._closing.is_set():
                down = self.outages.is_down
                if was_down and not down:  # a probe replayed the spool: it answered
                    self._used = self._answered = time.monotonic()
                was_down = down
                if not down and self._idle():
                    self._woken.wait()
                    self._woken.clear()
                    continue
                self._closing.wait(self.tick)
                self._look()
        except Exception as error:  # noqa: BLE001 - the watch must not take the writer down
            report_background_error(f"reachability check of {self.backend.name!r}", error)
            self.watching = False

    def _idle(self) -> bool:
        """Nothing in flight and nothing delivered lately: nothing to watch until the
        next delivery. (While the backend is down its probes ask it; the watch only
        waits for it to be back.)"""
        return self._busy_since is None and time.monotonic() - self._used > self.recent

    def _look(self) -> None:
        """Ask the backend if a delivery is slow or it has been quiet; report it down."""
        if self.outages.is_down:
            return
        now = time.monotonic()
        busy = self._busy_since
        if busy is not None and now - busy >= self.slow_after:
            due, since = now - self._checked >= self.busy_every, self._busy_wall
        elif (
            now - self._answered >= self.quiet_after
            and now - self._used <= self.recent
            and self._holds_work()
        ):
            due, since = now - self._checked >= self.quiet_after, time.time()
        else:
            return
        if due:
            self._ask(since)

    def _ask(self, since: float) -> None:
        """Ask the backend; report it unreachable since ``since`` (or since an attempt
        failed, if earlier)."""
        self._checked = time.monotonic()
        verdict = self.backend.reachable()
        if verdict is None:
            self.watching = False  # it cannot tell after all
        elif verdict:
            self._answered = time.monotonic()
        elif not self.outages.is_down:
            failed = self.failing_since
            self.outages.unreachable(min(since, failed) if failed is not None else since)
