"""What dead processes left in their journals, delivered by whoever comes next.

A process killed before its exit sequence (SIGKILL, ``os._exit``, the OOM killer)
leaves its journals under ``<local dir>/.journal``. The next process that tracks with
the same local dir recovers them on a background thread, and ``mlhooks sync`` does it
on request: each is delivered from its cursor into a backend rebuilt from its header,
exactly once, and the runs it left open end KILLED. What a backend refuses for good is
set aside under ``.spool/rejected`` as anywhere else.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlhooks.backends.base import Backend, Operation
from mlhooks.core.errors import warn_background
from mlhooks.core.redaction import redact_text
from mlhooks.delivery import selection
from mlhooks.delivery.journal import JournalHeader, Recovered, find_journals, recover
from mlhooks.delivery.spool import SpoolWriter
from mlhooks.delivery.staging import StoredSnapshots, discard_process_snapshots


class RejectedAside:
    """Where a replay puts what its backend refuses for good (the replay goes on)."""

    def __init__(self, folder: Path, backend: Backend) -> None:
        self.folder, self.backend, self.count = folder, backend, 0
        self._writer: SpoolWriter | None = None

    def reject(self, op: Operation, error: BaseException) -> None:
        if self._writer is None:
            self._writer = SpoolWriter(self.folder, self.backend)
        self._writer.append([op], reason=redact_text(f"{type(error).__name__}: {error}"))
        self.count += 1


def recover_journals(
    root: Path,
    backend: str | None = None,
    applied: Callable[[Operation], None] | None = None,
) -> list[Recovered]:
    """Recover every journal under ``root`` whose process died (optionally only those
    of one backend); journals of live processes are left alone."""
    results = []
    asides: list[RejectedAside] = []

    def reject(target: Backend) -> Callable[[Operation, BaseException], None]:
        aside = RejectedAside(root / ".spool" / "rejected", target)
        asides.append(aside)
        return aside.reject

    snapshots = StoredSnapshots(root)

    def stored(op: Operation) -> None:
        snapshots.stored(op)
        if applied is not None:
            applied(op)

    for journal in find_journals(root, backend):
        result = recover(journal, _rebuild, reject, stored)
        if result is not None:
            results.append(result)
    snapshots.discard()
    dead = {
        r.header.pid for r in results if r.error is None and r.header.host == socket.gethostname()
    }
    for pid in dead - {r.header.pid for r in results if r.error is not None}:
        if not any(j.header().pid == pid for j in find_journals(root)):
            discard_process_snapshots(root, pid, keep=_spool_files(root))
    return results


def _spool_files(root: Path) -> list[Path]:
    spools = root / ".spool"
    return [*spools.glob("*.spool.jsonl"), *spools.glob("rejected/*.spool.jsonl")]


def _rebuild(header: JournalHeader) -> Backend:
    return selection.backend_named(header.backend, **header.options)


def describe(result: Recovered) -> str:
    """One line on what a recovery did, for humans."""
    header = result.header
    runs = len(result.killed)
    ended = f"; {runs} run{'s' if runs != 1 else ''} it left open ended KILLED" if runs else ""
    return (
        f"{header.describe()} ended without its exit sequence: {result.delivered} "
        f"operations from its journal stored to {header.backend}{ended}"
    )


_started: set[Path] = set()
_lock = threading.Lock()


def recover_in_background(root: Path) -> None:
    """Once per process and local dir: recover dead processes' journals on a thread
    of its own, telling the user what was done."""
    key = root.resolve() if root.exists() else root.absolute()
    with _lock:
        if key in _started:
            return
        _started.add(key)
    if not any(find_journals(root)):
        return
    threading.Thread(
        target=_recover_and_tell, args=(root,), name="mlhooks-recovery", daemon=True
    ).start()


told: list[Recovered] = []
"""What this process's background recoveries did, once told (newest last)."""


def _recover_and_tell(root: Path) -> None:
    for result in recover_journals(root):
        if result.error is None:
            warn_background(f"recovered:{result.path}", "mlhooks: " + describe(result) + ".")
            told.append(result)
        else:
            warn_background(
                f"recovery-failed:{result.path}",
                f"mlhooks: could not recover {result.path} of {result.header.describe()} "
                f"({type(result.error).__name__}: {result.error}); `mlhooks sync` tries again.",
            )


def forget_started() -> None:
    """For tests: let the next lane start a recovery again."""
    with _lock:
        _started.clear()


__all__: list[Any] = ["RejectedAside", "describe", "recover_in_background", "recover_journals"]
