"""When the writer service starts its backends: not while its training process's
first fit trains, if it can help it.

Starting a backend in the service imports its library and opens its store (for MLflow,
about a second of imports and, for a new store, its set-up): CPU and memory work that,
on the core beside the training's, still slows a training loop by one or two percent
(the cores share caches and memory bandwidth). So the training process mirrors how
many of its fits run and how many ended into a page of shared memory
(:func:`mlhooks.core.activity.share`), and the service's :class:`StartGate` lets its
backends start only once one of these holds:

* :data:`FITS` fits ended since the service started (a loop of short fits: their
  runs should not wait);
* no fit ran for :data:`QUIET` seconds (the script loads its data, say);
* ``MLHOOKS_SERVICE_DEFER`` seconds passed since the service started (a long fit:
  its points are then stored while it goes on);
* something waits for the service: a flush, the process's exit or death, another
  process of the tree attaching.

Nothing waits in the training process meanwhile, and nothing is at risk: the journal
holds what it logs, and a service whose training process dies starts at once.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time

from mlhooks.core.activity import COUNTS

FITS = 2
"""Ended fits after which the service starts, training or not."""
QUIET = 1.0
"""Seconds without a running fit after which the service starts."""
POLL = 0.01
"""Seconds between two readings of the counts."""


def new_page() -> tuple[int, mmap.mmap] | None:
    """A page of shared memory for the counts: its file descriptor (for the service)
    and its map (for :func:`mlhooks.core.activity.share`); None where the platform
    has none to give (the service then starts at once)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return None
    try:
        fd = memfd_create("mlhooks-activity", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        os.ftruncate(fd, mmap.PAGESIZE)
        return fd, mmap.mmap(fd, mmap.PAGESIZE)
    except OSError:
        os.close(fd)
        return None


class StartGate:
    """Holds the service's backends back (:meth:`wait`) until the training process
    gives it a moment, or the service is needed (:meth:`open`)."""

    def __init__(self, page_fd: int | None = None, defer: float = 0.0) -> None:
        self._open = threading.Event()
        self.held = 0.0
        """Seconds the gate held the service back."""
        page = None
        if page_fd is not None:
            with contextlib.suppress(OSError, ValueError):
                page = mmap.mmap(page_fd, mmap.PAGESIZE, access=mmap.ACCESS_READ)
            os.close(page_fd)
        if page is None or defer <= 0:
            self._open.set()
            return
        threading.Thread(
            target=self._watch, args=(page, defer), name="mlhooks-service-gate", daemon=True
        ).start()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def open(self) -> None:
        """Let the backends start now (something waits for them)."""
        self._open.set()

    def wait(self) -> None:
        """Return once the backends may start."""
        self._open.wait()

    def _watch(self, page: mmap.mmap, defer: float) -> None:
        start = time.monotonic()
        quiet_since: float | None = start
        _, ended_before = COUNTS.unpack(page[: COUNTS.size])
        try:
            while not self._open.wait(POLL):
                running, ended = COUNTS.unpack(page[: COUNTS.size])
                now = time.monotonic()
                if running > 0:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                quiet = quiet_since is not None and now - quiet_since >= QUIET
                if ended - ended_before >= FITS or quiet or now - start >= defer:
                    self._open.set()
            self.held = time.monotonic() - start
        finally:
            page.close()
