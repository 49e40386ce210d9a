"""Background work for a run: what is too slow for the training thread (charts,
importance tables, saving a large model) runs on one mlhooks worker thread and is
reported as artifacts, or as a model whose files it wrote straight into the staging
area (stored by path, never copied again).

Tasks wait while a tracked fit is running in the process (at most ``MAX_DEFER``
seconds), so that they never compete with training for the CPU and the GIL; a flush,
the end of a user's run and exit do not wait for that. The run is *held* meanwhile
(:meth:`mlhooks.delivery.recorder.Recorder.hold`): ending it never waits on the training
thread, yet its end is stored after the task's artifacts. ``mlhooks.flush()``, the end
of a user's run and interpreter exit wait for the tasks.
"""

from __future__ import annotations

import functools
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mlhooks.core import activity
from mlhooks.core.errors import report_background_error, setting_or_default
from mlhooks.core.host import host
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child
from mlhooks.core.types import ModelArtifact, RunInfo
from mlhooks.delivery import staging
from mlhooks.delivery.recorder import recorder

Task = Callable[[Path], None]
"""Writes files into the directory it is given; they become the run's artifacts (or
the model's files)."""

MAX_DEFER = 300.0
"""Longest a task waits for the running fits to end before it runs anyway."""

_queue: queue.SimpleQueue[tuple[RunInfo, Callable[[], None], str]] = queue.SimpleQueue()
_worker: threading.Thread | None = None
_lock = threading.Lock()


def submit(run: RunInfo, task: Task, artifact_path: str | None, site: str) -> None:
    """Run ``task(directory)`` in the background and log what it wrote into
    ``directory`` to ``run``, under ``artifact_path``. ``site`` names it in warnings."""
    _put(run, functools.partial(_run_one, run, task, artifact_path), site)


def submit_model(run: RunInfo, task: Task, model: ModelArtifact, site: str) -> None:
    """Run ``task(folder)`` in the background, ``folder`` a new snapshot in the staging
    area, and report what it wrote there as ``model`` (its ``path``) of ``run``."""
    _put(run, functools.partial(_save_model, run, task, model), site)


def _put(run: RunInfo, job: Callable[[], None], site: str) -> None:
    recorder.hold(run.run_id)
    _queue.put((run, job, site))
    _ensure_worker()


def _ensure_worker() -> None:
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="mlhooks-tasks", daemon=True)
            _worker.start()


def _work() -> None:
    while True:
        run, job, site = _queue.get()
        activity.wait_until_idle(recorder.hurry, most=MAX_DEFER)
        try:
            job()
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


def _save_model(run: RunInfo, task: Task, model: ModelArtifact) -> None:
    """Let ``task`` write the model's files into a snapshot folder and report it; a
    task that fails or writes nothing leaves no folder. When the staging area cannot be
    written, the folder is a temporary one, stored from where it is (and left there)."""
    name = model.name.rsplit("/", 1)[-1] or "model"
    try:
        folder = staging.new_folder(name)
    except OSError as error:
        staging.warn_unwritable(error)
        folder = tempfile.mkdtemp(prefix=f"mlhooks-{name}-")
    try:
        task(Path(folder))
        written = any(Path(folder).iterdir())
    except BaseException:
        _discard(folder)
        raise
    if not written:
        _discard(folder)
        return
    host.emit("on_model_saved", run, replace(model, path=folder))


def _discard(folder: str) -> None:
    if staging.is_snapshot(folder):
        staging.release(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)


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
