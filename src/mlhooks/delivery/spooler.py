"""A lane's spools: where the operations its backend does not take go, and when the
lane tries the backend again.

* While the backend is down, operations go to a spool file (see :mod:`.spool`); every
  probe interval (doubling up to a maximum) the spool is replayed, and once that works
  the backend is up again.
* An operation the backend rejects for good goes to a spool of its own under
  ``rejected/``, for ``mlhooks sync``, so that it never holds the lane down.
* At exit, what a stuck backend still holds goes to a spool file of its own.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mlhooks.backends.base import Backend, BackendError, Operation
from mlhooks.core.errors import (
    background_failures,
    is_strict,
    report_background_error,
    warn_background,
)
from mlhooks.core.redaction import redact_text
from mlhooks.delivery import spool as spool_io
from mlhooks.delivery.staging import release_snapshot

log = logging.getLogger(__name__)


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
        self._next_probe = 0.0
        self._probe_interval = probe_interval

    @property
    def is_down(self) -> bool:
        """True while the backend fails and operations go to the spool."""
        return self._spool is not None

    @property
    def next_probe(self) -> float | None:
        """When (``time.monotonic()``) to replay the spool next; None while up."""
        return None if self._spool is None else self._next_probe

    def append(self, ops: list[Operation]) -> None:
        """Append ``ops`` to the spool, opening one (the backend is down from now)."""
        if self._spool is None:
            self._spool = spool_io.SpoolWriter(self.directory, self.backend)
            self._probe_interval = self.first_probe_interval
            self._next_probe = time.monotonic() + self._probe_interval
        self._spool.append(ops)

    def probe_if_due(self) -> None:
        """Replay the spool if the backend is down and its probe is due."""
        if self._spool is not None and time.monotonic() >= self._next_probe:
            self.probe()

    def probe(self) -> None:
        """Try to replay the spool; on success the backend is up again."""
        assert self._spool is not None
        spool_file = spool_io.SpoolFile(self._spool.path)
        if not spool_file.path.exists():  # replayed by `mlhooks sync --force`
            self._spool.close()
            self._spool = None  # nothing new since: the next failure opens another
            return
        try:
            spool_io.replay(spool_file, self.backend, reject=self.reject, applied=release_snapshot)
        except Exception as error:  # noqa: BLE001 - still down
            log.debug("backend %s still down: %r", self.backend.name, error)
            self._probe_interval = min(self._probe_interval * 2, self.max_probe_interval)
            self._next_probe = time.monotonic() + self._probe_interval
            return
        self._spool.close()
        self._spool = None
        log.info("backend %s is back; spool replayed", self.backend.name)

    def reject(self, op: Operation, error: BaseException) -> None:
        """Set ``op``, which the backend refused with ``error``, aside for good."""
        if not isinstance(error, BackendError) and is_strict():
            # Not a refusal the backend declared: most likely a bug in the backend.
            background_failures.append(f"backend {self.backend.name!r}: {error!r}")
        if self._rejected is None:
            self._rejected = spool_io.SpoolWriter(self.directory / "rejected", self.backend)
        self._rejected.append([op], reason=redact_text(f"{type(error).__name__}: {error}"))
        warn_background(
            f"rejected:{self.backend.name}:{type(error).__name__}",
            f"mlhooks: backend {self.backend.name!r} rejected an operation ({error}); "
            f"it was kept in {self._rejected.path}.",
        )

    def spool_at_exit(self, ops: list[Operation]) -> bool:
        """Put ``ops``, not stored before exit, into a spool file of their own; False
        when that failed (a full disk)."""
        if not ops:
            return True
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
