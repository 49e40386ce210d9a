"""Background work for a run: what is too slow for the training thread (charts,
importance tables) runs on one mlhooks worker thread and is reported as artifacts.

Tasks wait while a tracked fit is running in the process (at most ``MAX_DEFER``
seconds), so that they never compete with training for the CPU and the GIL; a flush,
the end of a user's run and exit do not wait for that. The run is *held* meanwhile
(:meth:`mlhooks.delivery.recorder.Recorder.hold`): ending it never waits on the training
thread, yet its end is stored after the task's artifacts. ``mlhooks.flush()``, the end
of a user's run and interpreter exit wait for the tasks.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from mlhooks.core import activity
from mlhooks.core.errors import report_background_error, setting_or_default
from mlhooks.core.host import host
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child
from mlhooks.core.types import RunInfo
from mlhooks.delivery import staging
from mlhooks.delivery.recorder import recorder

Task = Callable[[Path], None]
"""Writes files into the directory it is given; they become the run's artifacts."""

MAX_DEFER = 300.0
"""Longest a task waits for the running fits to end before it runs anyway."""

_queue: queue.SimpleQueue[tuple[RunInfo, Task, str | None, str]] = queue.SimpleQueue()
_worker: threading.Thread | None = None
_lock = threading.Lock()


def submit(run: RunInfo, task: Task, artifact_path: str | None, site: str) -> None:
    """Run ``task(directory)`` in the background and log what it wrote into
    ``directory`` to ``run``, under ``artifact_path``. ``site`` names it in warnings."""
    recorder.hold(run.run_id)
    _queue.put((run, task, artifact_path, site))
    _ensure_worker()


def _ensure_worker() -> None:
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="mlhooks-tasks", daemon=True)
            _worker.start()


def _work() -> None:
    while True:
        run, task, artifact_path, site = _queue.get()
        activity.wait_until_idle(recorder.hurry, most=MAX_DEFER)
        try:
            _run_one(run, task, artifact_path)
        except Exception as error:  # noqa: BLE001 - a task's bug must not stop the worker
            report_background_error(site, error)
        finally:
            recorder.release(run.run_id)


def _run_one(run: RunInfo, task: Task, artifact_path: str | None) -> None:
    # Not a TemporaryDirectory: its finalizer would delete it at exit, while
    # _wait_at_exit still lets the task finish.
    directory = Path(tempfile.mkdtemp(prefix="mlhooks-task-"))
    try:
        task(directory)
        if any(directory.iterdir()):
            host.emit("on_artifact", run, staging.stage(directory), artifact_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wait_at_exit() -> None:
    timeout: float = setting_or_default("MLHOOKS_EXIT_TIMEOUT")
    recorder.wait_released(None, timeout / 2)
    recorder.end_held_runs()  # what is still held ends now, its later reports spooled


def _reset_in_child() -> None:
    global _queue, _worker, _lock
    _queue = queue.SimpleQueue()
    _worker = None
    _lock = threading.Lock()


at_exit(_wait_at_exit, Stage.TASKS)
in_forked_child(_reset_in_child, Stage.TASKS)
