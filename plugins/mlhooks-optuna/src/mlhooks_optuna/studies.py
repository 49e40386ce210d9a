"""The study's run: one per study, agreed on through the study's storage.

The first ``optimize`` call of a study opens the run and writes its id into the study's
user attribute ``mlhooks.run_id``; every later call, in this process or in another one
sharing the storage, continues that run. The check and the claim happen under a lock (a
thread lock, and a file lock per study name for the processes of this machine), so that
of several processes starting at once exactly one creates the run. A storage other
processes may share (any but Optuna's in-memory one) keeps the file lock until the
backends stored the run's start, on a thread of its own: another process continues the
run only once its backends can find it (else each would create one of its own), and
the creator's trials do not wait for it. Calls running at the same time in one process
share the run they found open; the last one to finish ends it.

The same lock orders the processes' updates of the study's best (see
:meth:`.tracker.StudyTracker.check_best`): each process's writers store them
asynchronously, so without it a process's stale best could be stored after another's
newer one.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import mlhooks
from mlhooks.plugin import RunInfo, RunStatus, open_run, report_background_error

RUN_ID_ATTR = "mlhooks.run_id"
"""The study's user attribute that names its run."""
BEST_STEP_ATTR = "mlhooks.best_step"
"""The study's user attribute with the step of the last best value logged, by any
process sharing the study (see :meth:`.tracker.StudyTracker.check_best`)."""
STORED_TIMEOUT = 60.0
"""How long other processes may wait for the creator's backends to store the run's start."""


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
    with _lock:
        claim = MachineLock(study.study_name)
        try:
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
                try:
                    study.set_user_attr(RUN_ID_ATTR, info.run_id)
                except BaseException:
                    mlhooks.end_run(RunStatus.FAILED, run=info)  # the study runs untracked
                    raise
                if shareable(study):
                    claim.release_once_stored()
            _open[info.run_id] = shared
            return shared
        finally:
            claim.release()


def release(shared: StudyRun, error: BaseException | None) -> None:
    """One ``optimize`` call is done with the run; the last one ends it."""
    with _lock:
        shared.users -= 1
        if shared.users > 0:
            return
        _open.pop(shared.info.run_id, None)
    mlhooks.end_run(RunStatus.for_exception(error), run=shared.info)


def shareable(study: Any) -> bool:
    """Whether other processes may open ``study`` (its storage is not in memory)."""
    from optuna.storages import InMemoryStorage

    return not isinstance(getattr(study, "_storage", None), InMemoryStorage)


class MachineLock:
    """An exclusive lock, among the processes of this machine, for studies named
    ``study_name`` (studies of the same name in other storages share it: they only take
    turns). Without ``fcntl`` (Windows), no lock. Also a second instance in the same
    process waits for the first."""

    def __init__(self, study_name: str) -> None:
        self._handle: IO[str] | None = None
        try:
            import fcntl
        except ImportError:
            return
        digest = hashlib.sha256(study_name.encode()).hexdigest()[:24]
        folder = Path(tempfile.gettempdir()) / "mlhooks-locks"
        folder.mkdir(exist_ok=True)
        handle = open(folder / f"optuna-{digest}.lock", "a")  # noqa: SIM115 - held past this call
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing the file releases its lock

    def release_once_stored(self) -> None:
        """Hand the lock to a thread that releases it once the backends stored what
        was logged so far (the run's start), or after :data:`STORED_TIMEOUT`."""
        handle, self._handle = self._handle, None
        if handle is not None:
            threading.Thread(
                target=_release_once_stored, args=(handle,), name="mlhooks-optuna-claim",
                daemon=True,
            ).start()  # fmt: skip


def _release_once_stored(handle: IO[str]) -> None:
    try:
        mlhooks.flush(STORED_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - a background thread never raises
        report_background_error("optuna study run claim", error)
    finally:
        with contextlib.suppress(OSError):
            handle.close()
