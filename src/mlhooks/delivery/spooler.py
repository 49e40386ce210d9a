"""A lane's spools, and whether its backend is down: where the operations its backend
does not take go, when the lane tries the backend again, and what the user is told.

* The backend is *down* from the moment its operations go to a spool file (see
  :mod:`.spool`), or the lane's watch found it unreachable (see :mod:`.reachability`),
  until a probe replayed the spool: one warning says since when and where the
  operations go, one notice says when it answered again and how many were replayed.
* Every probe interval the lane probes: a backend that can tell whether it answers
  (``Backend.reachable``) is asked first, every :data:`RECHECK` seconds at most, and
  the spool is replayed once it answers; any other is probed by replaying the spool,
  the interval doubling up to a maximum.
* An operation the backend rejects for good goes to a spool of its own under
  ``rejected/``, for ``mlhooks sync``, so that it never holds the lane down. When the
  disk does not take it (full, read-only), it waits in memory and is written at a
  later round of the writer, or at exit; the lane goes on meanwhile.
* At exit, what a stuck backend still holds goes to a spool file of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mlhooks.backends.base import Backend, BackendError, Operation, unbundled
from mlhooks.core.errors import (
    background_failures,
    is_strict,
    notice_once,
    report_background_error,
    warn_background,
)
from mlhooks.core.redaction import redact_text
from mlhooks.delivery import spool as spool_io
from mlhooks.delivery.staging import release_snapshot

log = logging.getLogger(__name__)

RECHECK = 1.0
"""Seconds between two questions to a down backend that can tell whether it answers."""


@dataclass
class Outage:
    """The backend is down since ``since`` (``time.time()``)."""

    number: int
    since: float
    unreachable: bool = False
    """The backend itself said it does not answer (``Backend.reachable``), and has not
    answered since: nothing is worth waiting for (it is False while down only by
    failures, and while a spool is replayed into a backend that answers again)."""
    replayed: int = 0
    """Operations of the spool stored so far by probes."""


class Spooler:
    """The spool state of one backend's lane, in ``directory``."""

    def __init__(
        self,
        backend: Backend,
        directory: Path,
        probe_interval: float,
        max_probe_interval: float,
    ) -> None:
        self.backend = backend
        self.directory = directory
        self.first_probe_interval = probe_interval
        self.max_probe_interval = max_probe_interval
        self._spool: spool_io.SpoolWriter | None = None
        self._rejected: spool_io.SpoolWriter | None = None
        self._not_set_aside: list[tuple[Operation, BaseException]] = []
        """Rejected operations that the disk did not take yet, with why they were refused."""
        self._setting_aside = threading.Lock()
        self._next_probe = 0.0
        self._probe_interval = probe_interval
        self._outage: Outage | None = None
        self._outages = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def is_down(self) -> bool:
        """True while the backend is known down: operations go to the spool."""
        return self._spool is not None or self._outage is not None

    @property
    def unreachable_since(self) -> float | None:
        """Since when (``time.time()``) the backend is down and does not answer at all
        (see :attr:`Outage.unreachable`); None otherwise."""
        outage = self._outage
        return outage.since if outage is not None and outage.unreachable else None

    @property
    def next_probe(self) -> float | None:
        """When (``time.monotonic()``) to probe the backend next; None while up."""
        return self._next_probe if self.is_down else None

    # -- going down ---------------------------------------------------------------------

    def unreachable(self, since: float) -> None:
        """The backend does not answer (its watch asked it, from another thread): it
        is down from now on, and the user is told once."""
        with self._lock:
            if self._outage is not None:  # told already (it was failing)
                self._outage.unreachable = True
                return
            self._next_probe = time.monotonic() + min(self._probe_interval, RECHECK)
            outage = self._begin_outage(since)
            outage.unreachable = True
        warn_background(
            f"lane-down:{id(self)}:{outage.number}",
            f"mlhooks: backend {self.backend.name!r} ({self.backend.describe()}) unreachable "
            f"since {_clock(since)}; spooling to {self.directory}; training is not affected",
        )

    def append(
        self, ops: list[Operation], failure: BaseException | None = None, since: float | None = None
    ) -> None:
        """Append ``ops`` to the spool, opening one (the backend is down from now).
        ``failure`` is why they were not stored (the first failure at ``since``): the
        user is told, unless the backend was already known down."""
        if self._spool is None:
            self._spool = spool_io.SpoolWriter(self.directory, self.backend)
            if self._outage is None:
                self._probe_interval = self.first_probe_interval
                self._next_probe = time.monotonic() + self._probe_interval
        self._announce(failure, since)
        self._spool.append(unbundled(ops))

    def _announce(self, failure: BaseException | None, since: float | None) -> None:
        with self._lock:
            if self._outage is not None:
                return
            outage = self._begin_outage(since if since is not None else time.time())
        reason = f" ({failure!r})" if failure is not None else ""
        warn_background(
            f"lane-down:{id(self)}:{outage.number}",
            f"mlhooks: backend {self.backend.name!r} ({self.backend.describe()}) is failing "
            f"since {_clock(outage.since)}{reason}; spooling to {self.directory} and retrying "
            f"every {self.first_probe_interval:g}s; training is not affected",
        )

    def _begin_outage(self, since: float) -> Outage:
        self._outages += 1
        self._outage = Outage(self._outages, since)
        return self._outage

    # -- coming back --------------------------------------------------------------------

    def probe_if_due(self) -> None:
        """Probe the backend if it is down and its probe is due (never once closed)."""
        if self.is_down and not self._closed and time.monotonic() >= self._next_probe:
            self.probe()

    def probe(self) -> None:
        """Find out whether the backend is back: ask it, when it can tell; replay the
        spool; on success it is up again."""
        answered = time.time()
        verdict = self._answers()
        outage = self._outage
        if outage is not None:
            outage.unreachable = verdict is False
        if verdict is False:
            self._next_probe = time.monotonic() + min(self._probe_interval, RECHECK)
            return
        spool = self._spool
        if spool is not None:
            spool_file = spool_io.SpoolFile(spool.path)
            if spool_file.path.exists():  # unless `mlhooks sync --force` replayed it
                try:
                    spool_io.replay(
                        spool_file,
                        self.backend,
                        reject=self.reject_or_raise,
                        applied=self._replayed,
                    )
                except Exception as error:  # noqa: BLE001 - still down
                    log.debug("backend %s still down: %r", self.backend.name, error)
                    self._probe_interval = min(self._probe_interval * 2, self.max_probe_interval)
                    self._next_probe = time.monotonic() + self._probe_interval
                    return
            spool.close()
            self._spool = None
        self._back_up(answered)

    def _answers(self) -> bool | None:
        try:
            return self.backend.reachable()
        except Exception as error:  # noqa: BLE001 - a backend's bug: replay decides
            report_background_error(f"reachable() of backend {self.backend.name!r}", error)
            return None

    def _replayed(self, op: Operation) -> None:
        release_snapshot(op)
        outage = self._outage
        if outage is not None:
            outage.replayed += 1

    def _back_up(self, answered: float) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
            self._probe_interval = self.first_probe_interval
        if outage is None:
            return
        notice_once(  # good news, not a problem: a notice, never an exception
            f"lane-up:{id(self)}:{outage.number}",
            f"mlhooks: backend {self.backend.name!r} ({self.backend.describe()}) reachable "
            f"again at {_clock(answered)}; {outage.replayed} operations replayed",
        )

    # -- set aside ----------------------------------------------------------------------

    def reject(self, op: Operation, error: BaseException) -> None:
        """Set ``op``, which the backend refused with ``error``, aside for good; when
        the disk does not take it, it waits in memory (see :meth:`set_aside_waiting`)
        and the lane goes on."""
        disk_error = self._set_aside(op, error)
        if disk_error is not None:
            warn_background(
                f"rejected-waiting:{self.backend.name}",
                f"mlhooks: backend {self.backend.name!r} rejected an operation ({error}); "
                f"it cannot be set aside in {self.directory / 'rejected'} ({disk_error}), "
                "so it is kept in memory and written there once the disk takes it; the "
                "other operations go on. Training is not affected.",
            )

    def reject_or_raise(self, op: Operation, error: BaseException) -> None:
        """:meth:`reject` for a replay: when the disk does not take ``op``, the disk's
        error is raised, so that ``op`` stays in its spool (the replay stops there and
        the next probe goes on from it)."""
        disk_error = self._set_aside(op, error, wait=False)
        if disk_error is not None:
            raise disk_error

    def _set_aside(self, op: Operation, error: BaseException, wait: bool = True) -> OSError | None:
        """Write ``op`` aside after those waiting; the disk's error when it did not take
        it, in which case ``op`` waits in memory (``wait``) or is left to the caller."""
        if not isinstance(error, BackendError) and is_strict():
            # Not a refusal the backend declared: most likely a bug in the backend.
            background_failures.append(f"backend {self.backend.name!r}: {error!r}")
        with self._setting_aside:
            self._not_set_aside.append((op, error))
            disk_error = self._write_waiting()
            if disk_error is not None and not wait:
                self._not_set_aside.pop()  # the last one: ``op``
            return disk_error

    def set_aside_waiting(self) -> OSError | None:
        """Write the rejected operations waiting in memory to ``rejected/``, in order;
        None once all are written, else the disk's error (they keep waiting)."""
        with self._setting_aside:  # the writer, or exit while the writer hangs
            return self._write_waiting()

    def _write_waiting(self) -> OSError | None:
        while self._not_set_aside:
            op, error = self._not_set_aside[0]
            try:
                if self._rejected is None:
                    self._rejected = spool_io.SpoolWriter(self.directory / "rejected", self.backend)
                self._rejected.append([op], reason=redact_text(f"{type(error).__name__}: {error}"))
            except OSError as disk_error:
                return disk_error
            del self._not_set_aside[0]
            warn_background(
                f"rejected:{self.backend.name}:{type(error).__name__}",
                f"mlhooks: backend {self.backend.name!r} rejected an operation ({error}); "
                f"it was kept in {self._rejected.path}.",
            )
        return None

    def set_aside_at_exit(self) -> None:
        """At exit: a last try for the rejected operations waiting in memory; the user is
        told how many are lost when the disk still does not take them."""
        disk_error = self.set_aside_waiting() if self._not_set_aside else None
        if disk_error is not None:
            count = len(self._not_set_aside)
            warn_background(
                f"rejected-lost:{self.backend.name}",
                f"mlhooks: {count} operation{'s' if count != 1 else ''} that backend "
                f"{self.backend.name!r} rejected could not be set aside in "
                f"{self.directory / 'rejected'} before exit ({disk_error}) and "
                f"{'are' if count != 1 else 'is'} lost.",
            )

    def close(self) -> None:
        """At the lane's end: let go of the outage spool and the rejected one. A spool
        counts as still written while its writer holds it open, and ``mlhooks sync``
        leaves such a spool alone; a writer service lives on a while after closing a
        lane, so it must not hold them. Nothing is replayed from here after this."""
        with self._setting_aside:
            self._closed = True
            for writer in (self._spool, self._rejected):
                if writer is not None:
                    writer.close()
            self._rejected = None  # a later rejection (none expected) gets a new file

    def spool_at_exit(self, ops: list[Operation]) -> bool:
        """Put ``ops``, not stored before exit, into a spool file of their own; False
        when that failed (a full disk)."""
        if not ops:
            return True
        ops = unbundled(ops)
        try:
            writer = spool_io.SpoolWriter(self.directory, self.backend)
            writer.append(ops)
            writer.close()
        except Exception as error:  # noqa: BLE001 - nowhere left to put them
            report_background_error(
                f"spool of {len(ops)} unstored operations for {self.backend.name!r}", error
            )
            return False
        warn_background(
            f"exit-spool:{self.backend.name}",
            f"mlhooks: {len(ops)} operations for {self.backend.describe()!r} were not "
            f"stored before exit; they are in {writer.path}. Run `mlhooks sync`.",
        )
        return True


def _clock(when: float) -> str:
    """``when`` (``time.time()``) as the local time of day, HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(when))
