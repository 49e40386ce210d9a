"""The W&B backend: each mlhooks run a Weights & Biases run, online or offline.

What goes where (see docs/wandb.md):

* a run: a W&B run with the same id, its name, the experiment as the project (else the
  backend's), the description as notes; nested runs (a search's candidates) grouped
  under their parent (``<parent name>-<first 8 characters of its id>``);
* params: the config (numbers and booleans typed where the text is exactly theirs);
* tags: ``key=value`` W&B tags, and all of them whole in the config under
  ``mlhooks.tags``;
* metrics: history rows, one per step (several keys at one step share a row), plotted
  against the step metric ``mlhooks/step`` so that any step order is kept; each row
  carries the logged timestamp; the summary holds each key's value at its last step;
* datasets: ``dataset`` artifacts holding the fingerprint; models: ``model`` artifacts
  with the model's file; other artifacts: files of the run;
* the end: ``run.finish(exit_code)``: 0 for FINISHED, 1 for FAILED, 255 for KILLED.

Every call runs on the backend's writer thread. W&B's SDK talks to its own service
process; ``wandb`` is imported and the service started when the backend is built (on
the caller's thread, not mid-fit; see :mod:`.service`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from mlhooks import Capability, RunInfo
from mlhooks.plugin import (
    Backend,
    BackendError,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    notice_once,
)

from . import loading, reading
from .mapping import (
    EXIT_CODES,
    STEP_METRIC,
    TAGS_KEY,
    FinalValues,
    artifact_name,
    config_values,
    group_of,
    history_rows,
    tag_labels,
    wandb_run_id,
)
from .service import service

DEFAULT_SETTINGS: dict[str, Any] = {
    "console": "off",  # never capture the user's stdout and stderr
    "x_disable_stats": True,  # no second sampler: mlhooks has its own system metrics
    "x_save_requirements": False,  # pip freeze per run (0.4 s); the run context has it
    "silent": True,  # no banner per run: a search has one run per candidate
    "symlink": False,  # files of the run are ours to copy, never links to snapshots
    # W&B's service writes the run file every 15 s by default, and dies with a killed
    # process without writing the rest, which mlhooks' journal counts as stored.
    "x_transaction_log_flush_interval": 0.2,
}
"""W&B settings of every run, under the user's ``settings=``."""

RESERVED_FILES = frozenset(
    {
        "config.yaml",
        "wandb-summary.json",
        "wandb-metadata.json",
        "requirements.txt",
        "output.log",
        "diff.patch",
        "conda-environment.yaml",
        "wandb-job.json",
        "media",
        "code",
        "artifact",
    }
)
"""Names W&B uses in a run's files/ folder: an artifact there goes under ``mlhooks-files/``."""

Mode = Literal["online", "offline", "disabled", "shared"]


@dataclass
class _Run:
    """What the backend keeps about a W&B run of this process."""

    name: str
    group: str | None
    handle: Any = None
    """The ``wandb.Run``; None once finished."""
    finals: FinalValues = field(default_factory=FinalValues)
    tags: dict[str, str] = field(default_factory=dict)
    owned: bool = True
    """Started by this process: a forked child logs into its parent's runs (W&B attaches
    the inherited handle to the run on first use) but never finishes them."""


class WandbBackend(Backend):
    """Writes runs to Weights & Biases.

    Args:
        project: the W&B project of runs with no experiment; default ``WANDB_PROJECT``,
            else W&B's default.
        entity: the W&B entity (user or team); default ``WANDB_ENTITY``, else yours.
        dir: the folder under which W&B writes ``wandb/``; default ``WANDB_DIR``, else
            the current folder.
        mode: ``"online"``, ``"offline"`` or ``"disabled"``; default ``WANDB_MODE``, else
            W&B's (``wandb offline``/``wandb online``), and offline when no W&B
            credentials are configured (never a login prompt).
        settings: more ``wandb.Settings`` fields for every run, over the backend's.
        finish_timeout: seconds a run's end (or the end of W&B's service at exit) may
            wait for uploads; what is left stays on disk for ``wandb sync``.
    """

    name: ClassVar[str] = "wandb"
    capability_notes: ClassVar[dict[Capability, str]] = {
        Capability.METRICS: "history rows against the step metric 'mlhooks/step'; the "
        "value at each key's last step in the summary",
        Capability.PARAMS: "config (numbers and booleans typed)",
        Capability.TAGS: "W&B tags 'key=value' (at most 64 characters; not the run "
        "context's), and every tag whole in the config under 'mlhooks.tags'",
        Capability.ARTIFACTS: "files of the run",
        Capability.MODELS: "'model' artifacts",
        Capability.DATASETS: "fingerprints as 'dataset' artifacts",
    }
    max_batch_size: ClassVar[int] = 10_000
    # Each W&B call is a round trip to its service thread: let points gather for a
    # second, so that the keys of one step share one history row.
    write_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        mode: str | None = None,
        settings: dict[str, Any] | None = None,
        finish_timeout: float = 60.0,
    ) -> None:
        # Imported here, when the backend is chosen (autolog(), start_run()), not on
        # the writer thread: a second of imports would otherwise compete with a fit.
        # The service starts now too, so that its exit hook is ours before any run.
        import wandb

        self._wandb = wandb
        self.project = project or os.environ.get("WANDB_PROJECT") or None
        self.entity = entity or os.environ.get("WANDB_ENTITY") or None
        self.dir = Path(dir or os.environ.get("WANDB_DIR") or ".").absolute()
        self.mode = mode or os.environ.get("WANDB_MODE") or None
        self.settings = dict(settings or {})
        self.finish_timeout = finish_timeout
        self._runs: dict[str, _Run] = {}
        self._refused: dict[str, BackendError] = {}
        """Runs W&B refused to create (a project name it does not take), by run id."""
        self._lock = threading.RLock()
        self._run_settings()  # settings W&B refuses fail here, in the caller's code
        self._resolved_mode = self._decide_mode()

    def describe(self) -> str:
        mode = self._resolved_mode
        project = f"project {self.project}" if self.project else "W&B's default project"
        return f"Weights & Biases ({mode}, {project}), files under {self.dir / 'wandb'}"

    def spec(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "entity": self.entity,
            "dir": str(self.dir),
            "mode": self._resolved_mode,
            "settings": self.settings,
            "finish_timeout": self.finish_timeout,
        }

    def check(self) -> None:
        """The folder can be written, and online mode has credentials (no network)."""
        self._writable_dir()
        if self._resolved_mode == "online" and not self._has_credentials():
            raise BackendError("no W&B credentials: set WANDB_API_KEY or run `wandb login`")

    def is_retryable(self, error: BaseException) -> bool:
        """W&B's network trouble and a folder that cannot be written now are retried;
        a value or setting W&B refuses is not."""
        errors = self._wandb.errors
        if isinstance(error, BackendError):
            return error.retryable
        if isinstance(error, errors.UsageError | ValueError | TypeError | KeyError):
            return False
        if isinstance(error, errors.CommError):
            return True
        return super().is_retryable(error)

    # -- runs -------------------------------------------------------------------------

    def start_run(self, run: RunInfo) -> None:
        with self._lock:
            known = self._runs.get(run.run_id)
        if known is not None and known.handle is not None:
            return  # a start delivered again: the run is open
        group = self._children_group(run.parent_id) if run.parent_id else None
        tags = dict(run.tags)
        handle = self._init(
            run.run_id,
            name=run.name,
            project=run.experiment or self.project,
            group=group,
            tags=tag_labels(tags),
            notes=run.description,
            config={TAGS_KEY: tags} if tags else None,
            resume=known is not None or bool(reading.run_dirs(self.dir, run.run_id)),
        )
        with self._lock:
            self._runs[run.run_id] = _Run(run.name, group, handle, tags=tags)

    def end_run(self, op: EndRun) -> None:
        run = self._run(op.run_id)
        run.handle.finish(exit_code=EXIT_CODES.get(op.status, 1))
        run.handle, run.finals, run.tags = None, FinalValues(), {}  # summary: written

    # -- writes -----------------------------------------------------------------------

    def log_batch(self, batch: LogBatch) -> None:
        run = self._run(batch.run_id)
        handle = run.handle
        if batch.params:
            handle.config.update(config_values(batch.params), allow_val_change=True)
        if batch.tags:
            run.tags.update(batch.tags)
            handle.config.update({TAGS_KEY: dict(run.tags)}, allow_val_change=True)
            labels = tag_labels(run.tags)
            if list(handle.tags) != labels:
                handle.tags = tuple(labels)
        if batch.metrics:
            for row in history_rows(batch.metrics):
                handle.log(row.payload())
            handle.summary.update(run.finals.update(batch.metrics))

    def log_artifact(self, op: LogArtifact) -> None:
        handle = self._run(op.run_id).handle
        files_dir = Path(handle.dir)
        source = Path(op.local_path)
        prefix = Path(*[part for part in (op.artifact_path or "").split("/") if part])
        if source.is_dir():
            pairs = [(p, prefix / p.relative_to(source)) for p in sorted(source.rglob("*"))]
        else:
            pairs = [(source, prefix / source.name)]
        for path, relative in pairs:
            if not path.is_file():
                continue
            if relative.parts[0] in RESERVED_FILES:
                relative = Path("mlhooks-files") / relative
            target = files_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(path, target)
            handle.save(str(target), base_path=str(files_dir), policy="now", glob=False)

    def log_model(self, op: LogModel) -> None:
        model = op.model
        handle = self._run(op.run_id).handle
        with _model_file(model) as (path, file_name):
            metadata = _json_safe(
                {
                    "flavor": model.flavor,
                    "format": model.format,
                    "file": file_name,
                    "mlhooks_run_id": op.run_id,
                    **model.metadata,
                }
            )
            artifact = self._wandb.Artifact(
                artifact_name(model.name, handle.id), type="model", metadata=metadata
            )
            if path.is_dir():
                artifact.add_dir(str(path), name=file_name)
            else:
                artifact.add_file(str(path), name=file_name)  # copied to W&B's staging now
            handle.log_artifact(artifact)

    def log_dataset(self, op: LogDataset) -> None:
        handle = self._run(op.run_id).handle
        fingerprint = op.dataset.to_dict()
        artifact = self._wandb.Artifact(
            artifact_name(op.dataset.name), type="dataset", metadata=fingerprint
        )
        with artifact.new_file("fingerprint.json") as f:
            f.write(json.dumps(fingerprint, sort_keys=True, indent=1))
        handle.log_artifact(artifact, aliases=["latest", artifact_name(op.dataset.context)])

    # -- reading ----------------------------------------------------------------------

    def load_model(self, run_id: str, name: str) -> Any:
        """Model ``name`` of run ``run_id``, from W&B's folders on this machine (see
        :mod:`.loading` and :func:`mlhooks.load_model`)."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and run.handle is None:
            # Ended here: W&B's service writes the run's last records after finish().
            for folder in reading.run_dirs(self.dir, run_id)[-1:]:
                reading.wait_until_finished(folder, self.finish_timeout)
        still_open = run is not None and run.handle is not None
        return loading.load_model(self.dir, run_id, name, wait=5.0 if still_open else 0.0)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """At exit, the last W&B backend to close ends W&B's service, which finishes
        the runs nobody ended (a run of ``mlflow.start_run()``) as W&B would. Closed
        before exit (``mlhooks sync`` replayed a journal), its open runs finish now."""
        with self._lock:
            handles = [r.handle for r in self._runs.values() if r.handle is not None and r.owned]
            for run in self._runs.values():
                run.handle = None
        if not service.exiting:
            for handle in handles:
                handle.finish()
        service.release(self, self.finish_timeout + 10)

    def after_fork(self) -> None:
        # The child may log into its parent's runs: W&B attaches an inherited handle to
        # its run on first use (through the parent's service); ending them is the
        # parent's job.
        self._lock = threading.RLock()
        for run in self._runs.values():
            run.owned = False

    # -- helpers ----------------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        """The open W&B run of ``run_id``; one started elsewhere (another process, a
        run ended and logged to again) is resumed."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and run.handle is not None:
            return run
        found = reading.run_dirs(self.dir, run_id)
        first = reading.first_run_record(found[-1]) if found else None
        name = run.name if run is not None else (first.name if first else run_id)
        group = run.group if run is not None else (first.group if first else None)
        handle = self._init(
            run_id,
            name=name,
            project=(first.project if first else None) or self.project,
            group=group or None,
            resume=True,
        )
        with self._lock:
            if run is None:
                run = self._runs[run_id] = _Run(name, group or None, handle)
            else:
                run.handle = handle
        return run

    def _children_group(self, parent_id: str) -> str:
        """Children share their parent's group, or one named after their parent."""
        with self._lock:
            parent = self._runs.get(parent_id)
        if parent is not None:
            return parent.group or group_of(parent.name, parent_id)
        found = reading.run_dirs(self.dir, parent_id)
        first = reading.first_run_record(found[-1]) if found else None
        if first is not None:
            return first.group or group_of(first.name, parent_id)
        return group_of("run", parent_id)

    def _init(self, run_id: str, *, resume: bool, **fields: Any) -> Any:
        """A new (or resumed) W&B run of this process, its metrics on the step metric.
        A run W&B refuses (``UsageError``: a project name it does not take, say) is
        refused for good: the run's later operations are set aside without asking
        again (mlhooks splits a refused batch to find what is refused)."""
        refused = self._refused.get(run_id)
        if refused is not None:
            raise refused
        mode = self._resolved_mode
        self._writable_dir()
        service.ensure(self)  # again: the user may have ended W&B's (wandb.teardown())
        if mode == "disabled":
            notice_once(
                "wandb-disabled",
                "mlhooks: W&B is disabled (WANDB_MODE=disabled): backend 'wandb' stores nothing.",
            )
        try:
            handle = self._wandb.init(
                id=wandb_run_id(run_id),
                entity=self.entity,
                dir=str(self.dir),
                mode=mode,
                resume="allow" if resume else None,
                reinit="create_new",  # beside the user's run and our other runs
                settings=self._run_settings(),
                **fields,
            )
        except self._wandb.errors.UsageError as error:
            refusal = self._refused[run_id] = BackendError(
                f"W&B refused run {run_id}: {error}", retryable=False
            )
            raise refusal from error
        handle.define_metric(STEP_METRIC, hidden=True)
        handle.define_metric("*", step_metric=STEP_METRIC)
        return handle

    def _run_settings(self) -> Any:
        """The ``wandb.Settings`` of every run: the backend's, then the user's."""
        values = {**DEFAULT_SETTINGS, "finish_timeout": self.finish_timeout, **self.settings}
        return self._wandb.Settings(**values)

    def _decide_mode(self) -> Mode:
        """The mode of this backend's runs, decided when it is built (W&B's service
        starts then): never a login prompt later, offline when online has no
        credentials."""
        setup = service.ensure(self)
        mode = self.mode or setup.settings.mode
        mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
        if mode == "online" and not self._has_credentials():
            notice_once(
                "wandb-offline",
                f"mlhooks: no W&B credentials (WANDB_API_KEY or `wandb login`), so backend "
                f"'wandb' writes its runs offline under {self.dir / 'wandb'}; upload them "
                "later with `wandb sync`.",
            )
            mode = "offline"
        for known in get_args(Mode):
            if mode == known:
                return known  # type: ignore[no-any-return]
        raise ValueError(f"W&B mode {mode!r} is not one of {', '.join(get_args(Mode))}")

    def _has_credentials(self) -> bool:
        """Whether W&B has credentials, without a prompt or the network."""
        if self._wandb.run is not None:  # the user's own run: W&B is logged in already
            return True
        return bool(self._wandb.login(prompt=False, verify=False))

    def _writable_dir(self) -> None:
        """W&B would silently write to the temp folder instead: fail here (retried)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise PermissionError(f"W&B's folder {self.dir} cannot be written")


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link to the staged snapshot (which nobody rewrites), else a copy."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@contextlib.contextmanager
def _model_file(model: Any) -> Iterator[tuple[Path, str]]:
    """The model's bytes as a file (a temporary one for a captured payload), and the
    name it gets in the artifact."""
    if model.payload is not None:
        file_name = "model.pkl" if model.format == "pickle" else f"model.{model.format}"
        with tempfile.TemporaryDirectory(prefix="mlhooks-wandb-") as directory:
            path = Path(directory, file_name)
            path.write_bytes(model.payload)
            yield path, file_name
    elif model.path is not None:
        path = Path(model.path)
        yield path, path.name
    else:
        raise BackendError(
            f"model {model.name!r} has neither a payload nor a path", retryable=False
        )


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as JSON can hold them (what it cannot, as text)."""
    result: dict[str, Any] = json.loads(json.dumps(values, default=str))
    return result
