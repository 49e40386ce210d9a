"""The study's run: one per study, agreed on through the study's storage.

The first ``optimize`` call of a study opens the run, waits until the backends stored
its start, and writes its id into the study's user attribute ``mlhooks.run_id``; every
later call, in this process or in another one sharing the storage, continues that run.
The check and the claim happen under a lock (a thread lock, and a file lock per study
name for the processes of this machine), so that of several processes starting at
once exactly one creates the run. Calls running at the same time in one process share
the run they found open; the last one to finish ends it.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlhooks
from mlhooks.plugin import RunInfo, RunStatus, open_run

RUN_ID_ATTR = "mlhooks.run_id"
"""The study's user attribute that names its run."""
STORED_TIMEOUT = 30.0
"""How long the creator of a study's run waits for the backends to store its start."""


@dataclass
class StudyRun:
    """A study's run, open in this process, and how many ``optimize`` calls use it."""

    info: RunInfo
    created: bool
    """Whether this process created the run (False: continued from the storage)."""
    users: int = 1


_open: dict[str, StudyRun] = {}
_lock = threading.Lock()


def acquire(study: Any, tags: Mapping[str, Any]) -> StudyRun:
    """The run of ``study`` for one ``optimize`` call: the one open in this process,
    else the one the storage names (continued), else a new one, named in the storage."""
    with _lock, _machine_lock(study.study_name):
        run_id = study.user_attrs.get(RUN_ID_ATTR)
        if isinstance(run_id, str) and run_id in _open:
            shared = _open[run_id]
            shared.users += 1
            return shared
        if isinstance(run_id, str) and run_id:
            info = open_run(study.study_name, run_id=run_id, managed=True, tags=tags).info
            shared = StudyRun(info, created=False)
        else:
            info = open_run(study.study_name, managed=True, tags=tags).info
            shared = StudyRun(info, created=True)
            # Other processes continue the run once they read its id: the backends
            # must know it by then, or each would create one of its own.
            mlhooks.flush(STORED_TIMEOUT)
            study.set_user_attr(RUN_ID_ATTR, info.run_id)
        _open[info.run_id] = shared
        return shared


def release(shared: StudyRun, error: BaseException | None) -> None:
    """One ``optimize`` call is done with the run; the last one ends it."""
    with _lock:
        shared.users -= 1
        if shared.users > 0:
            return
        _open.pop(shared.info.run_id, None)
    mlhooks.end_run(RunStatus.for_exception(error), run=shared.info)


@contextlib.contextmanager
def _machine_lock(study_name: str) -> Iterator[None]:
    """An exclusive lock, among the processes of this machine, for studies named
    ``study_name`` (studies of the same name in other storages share it: they only take
    turns). A no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: the thread lock alone
        yield
        return
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "mlhooks-locks"
    folder.mkdir(exist_ok=True)
    with open(folder / f"optuna-{digest}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
