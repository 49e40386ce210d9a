"""Whether a tracked fit is running in this process. Background work (the writers,
the task worker) yields to training while one is: it competes for the CPU and, in
Python, for the GIL that a native training loop (XGBoost, torch) needs between calls."""

from __future__ import annotations

import threading
import time

from mlhooks.core.shutdown import Stage, in_forked_child

_lock = threading.Lock()
_running = 0
idle = threading.Event()
"""Set while no tracked fit runs in this process."""
idle.set()


def fit_started() -> None:
    global _running
    with _lock:
        _running += 1
        idle.clear()


def fit_ended() -> None:
    global _running
    with _lock:
        _running = max(0, _running - 1)
        if _running == 0:
            idle.set()


def training() -> bool:
    """True while a tracked fit runs."""
    return not idle.is_set()


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
    global _lock, _running
    _lock = threading.Lock()
    _running = 0
    idle.set()


in_forked_child(_reset_in_child, Stage.ACTIVITY)
