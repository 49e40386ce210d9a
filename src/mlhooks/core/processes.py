"""Whether a process runs: by pid, telling a finished process nobody reaped yet (a
zombie, which the kernel still lists) from one that still works."""

from __future__ import annotations

import os


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and has not finished."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (or it just went): trust the signal check
    return state not in ("Z", "X")


__all__ = ["is_running"]
