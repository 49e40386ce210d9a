"""Whether a tracked fit is running in this process. Background work (the writers,
the task worker) yields to training while one is: it competes for the CPU and, in
Python, for the GIL that a native training loop (XGBoost, torch) needs between calls.

Also whether a fit starting on a thread pool's worker thread is part of one running
on another thread: a scikit-learn search fits its candidates on joblib's threads
with ``backend="threading"``, where the per-thread nesting guard cannot see them.
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from typing import Protocol

from mlhooks.core.shutdown import Stage, in_forked_child

_lock = threading.Lock()
_running = 0
_outer = 0
"""Running fits that started on a thread that is not a pool's worker."""
_finished = 0
"""Fits that ended in this process."""
COUNTS = struct.Struct("<qq")
"""How :func:`share` writes the counts: fits running, fits ended."""


class Writable(Protocol):
    def __setitem__(self, index: slice, value: bytes) -> None: ...


_shared: Writable | None = None
"""Where the counts are mirrored for another process (the writer service) to read."""
idle = threading.Event()
"""Set while no tracked fit runs in this process."""
idle.set()


def fit_started() -> bool:
    """Count a fit starting on this thread; returns what :func:`fit_ended` takes
    (whether it counts among the fits that pool workers' fits belong to)."""
    global _running, _outer
    outer = not on_pool_thread()
    with _lock:
        _running += 1
        _outer += outer
        idle.clear()
        _mirror()
    return outer


def fit_ended(outer: bool | None = None) -> None:
    """A fit ended; ``outer`` is what :func:`fit_started` returned for it (by default,
    whether this thread is not a pool's worker)."""
    global _running, _outer, _finished
    if outer is None:
        outer = not on_pool_thread()
    with _lock:
        _running = max(0, _running - 1)
        _outer = max(0, _outer - outer)
        _finished += 1
        if _running == 0:
            idle.set()
        _mirror()


def share(page: Writable | None) -> None:
    """Mirror the count of fits running and of fits ended into ``page`` (shared memory
    that the writer service reads: it holds back its heavy start while training
    runs), from now on; None stops it."""
    global _shared
    with _lock:
        _shared = page
        _mirror()


def _mirror() -> None:
    """Write the counts where :func:`share` was told (under ``_lock``)."""
    if _shared is not None:
        _shared[0 : COUNTS.size] = COUNTS.pack(_running, _finished)


def training() -> bool:
    """True while a tracked fit runs."""
    return not idle.is_set()


def on_pool_thread() -> bool:
    """Whether this thread is a worker of a ``multiprocessing.pool.ThreadPool`` (which
    joblib's threading backend uses)."""
    pool = sys.modules.get("multiprocessing.dummy")
    return pool is not None and isinstance(threading.current_thread(), pool.DummyProcess)


def helper_thread_of_a_fit() -> bool:
    """Whether a fit starting now on this thread is part of a tracked fit running on
    another thread: this thread is a pool's worker while a fit that did not start on
    one runs (a search fitting its candidates on joblib's threads). Such a fit is the
    outer fit's business: a ``FitHandler.track`` that returns False for it keeps it
    from becoming a run of its own."""
    return _outer > 0 and on_pool_thread()


def wait_until_idle(*hurry: threading.Event, most: float) -> None:
    """Wait while a tracked fit runs, at most ``most`` seconds, and not once any of
    the ``hurry`` events is set (someone waits for the background work)."""
    deadline = time.monotonic() + most
    while training() and not any(event.is_set() for event in hurry):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        idle.wait(min(0.1, left))


def _reset_in_child() -> None:
    global _lock, _running, _outer, _finished, _shared
    _lock = threading.Lock()
    _running = 0
    _outer = 0
    _finished = 0
    _shared = None  # the parent's: its service reads the parent's fits only
    idle.set()


in_forked_child(_reset_in_child, Stage.ACTIVITY)
