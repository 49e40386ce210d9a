"""The TensorBoard backend: each run a directory of standard event files.

Layout under the root (``./tb-runs`` unless ``root=`` or ``MLHOOKS_TENSORBOARD_DIR``
says otherwise)::

    <root>/<run name>-<first 8 characters of the run id>/events.out.tfevents.*
    <root>/<parent dir>/<child name>-<id>/...        nested runs inside their parent

What lands there: metrics as scalars (exact steps; wall time = the logged timestamp),
tags and the run description as text, png/jpg artifacts as images, and, when the run
ends, its params and status for the HParams dashboard (which shows the last value of
each scalar beside them), once per run: TensorBoard shows the first. Params are also
kept in the event files as logged, so that a process that ends a run another one
started (a recovered journal, a replayed spool) writes its row with them. Models,
datasets and other artifacts are not kept: the user is told once per run.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlhooks import Capability, RunInfo
from mlhooks.plugin import (
    Backend,
    BackendError,
    EndRun,
    LogArtifact,
    LogBatch,
    declare_setting,
    notice_once,
    setting,
)

if TYPE_CHECKING:
    from .events import EventFile

DEFAULT_DIR = "tb-runs"
OWN_ARTIFACTS = "mlhooks/"
"""Where mlhooks keeps files of its own (the run context), skipped without a notice."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


DIR_SETTING = declare_setting(
    "MLHOOKS_TENSORBOARD_DIR",
    lambda raw: raw.strip() or None,
    None,
    "root of the TensorBoard backend's runs",
    default_text="`./tb-runs`",
    owner="mlhooks-tensorboard",
)


def default_dir() -> Path:
    """``MLHOOKS_TENSORBOARD_DIR``, else ``./tb-runs``."""
    return Path(setting(DIR_SETTING.name) or DEFAULT_DIR)


def short_id(run_id: str) -> str:
    return _UNSAFE.sub("_", run_id)[:8]


def dir_name(run: RunInfo) -> str:
    """A readable, unique folder name: the run's name and the start of its id."""
    name = _UNSAFE.sub("_", run.name).strip("._")[:64] or "run"
    return f"{name}-{short_id(run.run_id)}"


_UNSAFE = re.compile(r"[^\w.\-]+")


@dataclass
class _Run:
    """What the backend keeps in memory about a run until it ends."""

    name: str
    start_time: float
    owned: bool = True
    """Started by this process (not inherited through a fork, not started elsewhere)."""
    params: dict[str, str] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    """Images written per tag: the next one gets the next step."""
    session_started: bool = False
    """Its HParams session start is in its event files (TensorBoard shows the first)."""
    session_ended: bool = False

    def read_back(self, directory: Path, events: Any) -> _Run:
        """Take what the run's event files hold already (written by another process,
        or by an earlier life of the run): its params and whether its session started
        or ended."""
        written = events.written_session(directory)
        self.params = {**written.params, **self.params}
        self.session_started, self.session_ended = written.started, written.ended
        return self


class TensorBoardBackend(Backend):
    """Writes runs as TensorBoard event files under ``root``; open them with
    ``tensorboard --logdir <root>``."""

    name: ClassVar[str] = "tensorboard"
    out_of_process: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.METRICS, Capability.PARAMS, Capability.TAGS, Capability.ARTIFACTS}
    )
    capability_notes: ClassVar[dict[Capability, str]] = {
        Capability.METRICS: "as 32-bit float scalars",
        Capability.PARAMS: "in the HParams dashboard, when the run ends",
        Capability.TAGS: "as text",
        Capability.ARTIFACTS: "png and jpg images only",
    }
    max_batch_size: ClassVar[int] = 10_000
    max_open_files: ClassVar[int] = 32

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        # The writer library is imported here, when the backend is chosen (autolog(),
        # start_run()), not on the writer thread: tensorboardX imports torch when it is
        # installed, which would stall training mid-fit, and fails during interpreter
        # shutdown when a short script's last run is written at exit.
        from . import events

        self._events = events
        self.root = Path(root) if root is not None else default_dir()
        self._dirs: dict[str, Path] = {}
        self._runs: dict[str, _Run] = {}
        self._files: OrderedDict[str, EventFile] = OrderedDict()
        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"TensorBoard event files under {self.root.resolve()}"

    def spec(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve())}

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, (FileNotFoundError, NotADirectoryError, ValueError)):
            return False  # a folder that vanished or a value protobuf refuses stays so
        return super().is_retryable(error)

    def run_dir(self, run_id: str) -> Path:
        """The folder of run ``run_id`` (looked up on disk for runs started elsewhere)."""
        directory = self._dirs.get(run_id)
        if directory is None:
            found = [p for p in self.root.rglob(f"*-{short_id(run_id)}") if p.is_dir()]
            if not found:
                raise BackendError(
                    f"run {run_id!r} was never started under {self.root}", retryable=False
                )
            directory = self._dirs[run_id] = found[0]
        return directory

    # -- writes -------------------------------------------------------------------------

    def start_run(self, run: RunInfo) -> None:
        parent = self.root  # also when the parent was never stored here
        if run.parent_id:
            with contextlib.suppress(BackendError):
                parent = self.run_dir(run.parent_id)
        directory = parent / dir_name(run)
        state = _Run(run.name, run.start_time / 1000.0)
        if directory.is_dir():  # a run continued, or its start stored again by a recovery
            state.read_back(directory, self._events)
        with self._lock:
            self._dirs[run.run_id] = directory
            self._runs[run.run_id] = state
        when = run.start_time / 1000.0
        events = [self._events.text_event(f"tags/{k}", v, 0, when) for k, v in run.tags.items()]
        if run.description:
            events.append(self._events.text_event("description", run.description, 0, when))
        directory.mkdir(parents=True, exist_ok=True)
        if events:
            self._write(run.run_id, events)

    def log_batch(self, batch: LogBatch) -> None:
        events = self._events.scalar_events(batch.metrics)
        now = time.time()
        events += [self._events.text_event(f"tags/{k}", v, 0, now) for k, v in batch.tags.items()]
        if batch.params:
            self._run(batch.run_id).params.update(batch.params)
            events.append(self._events.params_event(batch.params, now))
        if events:
            self._write(batch.run_id, events)

    def log_artifact(self, op: LogArtifact) -> None:
        source = Path(op.local_path)
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        base = source if source.is_dir() else source.parent
        run = self._run(op.run_id)
        events, skipped = [], []
        for path in files:
            tag = str(path.relative_to(base).as_posix())
            if op.artifact_path:
                tag = f"{op.artifact_path.strip('/')}/{tag}"
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                if not tag.startswith(OWN_ARTIFACTS):  # mlhooks' run context: no notice
                    skipped.append(tag)
                continue
            step = run.images.get(tag, 0)
            try:
                events.append(self._events.image_event(tag, path, step, time.time()))
            except self._events.NotAnImage as error:
                notice_once(
                    f"tensorboard-bad-image:{op.run_id}:{tag}",
                    f"mlhooks: artifact {tag!r} of run {run.name!r} is not a readable image "
                    f"({error}); backend 'tensorboard' did not store it.",
                )
                continue
            run.images[tag] = step + 1
        if events:
            self._write(op.run_id, events)
        if skipped:
            notice_once(
                f"tensorboard-artifact:{op.run_id}",
                f"mlhooks: backend 'tensorboard' keeps png and jpg images only, so artifact "
                f"{skipped[0]!r} of run {run.name!r} is not stored there (nor later "
                "artifacts of this run that are not images).",
            )

    def end_run(self, op: EndRun) -> None:
        run = self._run(op.run_id)
        events = [] if run.session_started else [self._session_start(run)]
        if not run.session_ended:  # TensorBoard shows the first end: once is enough
            events.append(self._events.session_end_event(op.status, op.end_time / 1000))
        if events:
            self._write(op.run_id, events)
        with self._lock:
            self._runs.pop(op.run_id, None)
            handle = self._files.pop(op.run_id, None)
        if handle is not None:
            handle.close()

    def _session_start(self, run: _Run) -> Any:
        return self._events.session_start_event(run.params, run.start_time)

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: every batch is flushed to disk before ``log_batch`` returns."""

    def close(self) -> None:
        """At exit: runs this process started and never ended (runs opened with
        ``mlflow.start_run()``, which mlhooks does not end) get their HParams row now,
        with the params logged so far; then every file is closed."""
        with self._lock:
            unended = [(run_id, run) for run_id, run in self._runs.items() if run.owned]
            self._runs = {run_id: run for run_id, run in self._runs.items() if not run.owned}
        for run_id, run in unended:
            if not run.session_started:
                self._write(run_id, [self._session_start(run)])
        with self._lock:
            files, self._files = list(self._files.values()), OrderedDict()
        for handle in files:
            handle.close()

    def after_fork(self) -> None:
        # The parent's files hold no buffered bytes (each write is flushed): dropping
        # them closes only the child's descriptors. Runs stay known, their folders too,
        # but they are the parent's to end.
        self._files = OrderedDict()
        self._lock = threading.RLock()
        for run in self._runs.values():
            run.owned = False

    # -- helpers ------------------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        """The state of a run; for a run started in another process (a replayed spool,
        a recovered journal), one named after its folder, with what its event files
        hold already."""
        run = self._runs.get(run_id)
        if run is None:
            directory = self.run_dir(run_id)
            name = directory.name.rsplit("-", 1)[0]
            run = _Run(name, time.time(), owned=False).read_back(directory, self._events)
            self._runs[run_id] = run
        return run

    def _write(self, run_id: str, events: list[Any]) -> None:
        with self._lock:
            handle = self._files.get(run_id)
            if handle is None:
                handle = self._files[run_id] = self._events.EventFile(self.run_dir(run_id))
                while len(self._files) > self.max_open_files:
                    _, oldest = self._files.popitem(last=False)
                    oldest.close()
            else:
                self._files.move_to_end(run_id)
            try:
                handle.write(events)
            except BaseException:
                # A failed write leaves the file as it was, for the retry. If it could
                # not (a torn record ends what TensorBoard reads of a file), the retry
                # writes to a new one.
                if not handle.intact:
                    del self._files[run_id]
                    with contextlib.suppress(Exception):
                        handle.close()
                raise
