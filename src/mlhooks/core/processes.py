"""What a process is: whether one runs (by pid, telling a finished process nobody
reaped yet, a zombie, which the kernel still lists, from one that still works), and
whether this one is a writer service."""

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


_writer_service = False


def become_writer_service() -> None:
    """This process is a writer service (what it spools says so, and ``mlhooks sync``
    waits for it rather than skipping its spools)."""
    global _writer_service
    _writer_service = True


def is_writer_service() -> bool:
    return _writer_service


__all__ = ["become_writer_service", "is_running", "is_writer_service"]
