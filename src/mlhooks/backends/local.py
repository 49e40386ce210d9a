"""The embedded store: plain files, append-only, zero dependencies.

Layout, one folder per run under the root (``./mlhooks-runs`` unless
``MLHOOKS_LOCAL_DIR`` or ``root=`` says otherwise)::

    <root>/<run_id>/meta.json       the run (rewritten atomically when it ends)
                    metrics.tsv     key, step, timestamp, value: one point a line
                    params.jsonl    one JSON object of params per batch
                    tags.jsonl      one JSON object of tags per batch (later wins)
                    datasets.jsonl  one dataset fingerprint a line
                    artifacts/...   artifact files
                    models/<name>/  model.pkl, the checkpoint file or the model's
                                    folder (a save_pretrained one), and model.json

Every batch is written to the operating system before the writer moves on, so a
SIGKILLed process loses nothing that was flushed; ``flush`` and run end also fsync. A
torn last line (the process died mid-write) is ignored when reading. On a full or
read-only disk a write fails whole (:mod:`mlhooks.core.files`): no partial line, file
or copy stays, so the writer's retry stores each point once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

from mlhooks.backends.base import (
    Backend,
    BackendError,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
)
from mlhooks.backends.models import loaded, model_named, model_rows
from mlhooks.backends.query import search_rows
from mlhooks.core import settings
from mlhooks.core.files import (
    append_all,
    append_whole,
    copy_folder_whole,
    copy_whole,
    open_append,
    write_whole,
)
from mlhooks.core.types import (
    ALL_CAPABILITIES,
    Capability,
    DatasetInfo,
    Metric,
    ModelArtifact,
    RunData,
    RunInfo,
    RunStatus,
)

DEFAULT_ROOT = "mlhooks-runs"


def default_root() -> Path:
    """Where the local store lives unless told otherwise."""
    return Path(settings.get("MLHOOKS_LOCAL_DIR") or DEFAULT_ROOT)


class LocalBackend(Backend):
    """Writes runs as files under ``root``; read them back with :class:`LocalStore`."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[frozenset[Capability]] = ALL_CAPABILITIES
    max_batch_size: ClassVar[int] = 100_000
    _max_open_runs = 32

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._files: OrderedDict[tuple[str, str], int] = OrderedDict()
        """Open descriptors (appending) by run and file name, the most recent last."""
        self._forked = False
        """True in a forked child: runs it inherited may not be stored yet."""

    def describe(self) -> str:
        return f"local store at {self.root.resolve()}"

    def spec(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve())}

    def check(self) -> None:
        """The root can be created and written to."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".doctor-{os.getpid()}"
        try:
            probe.write_text("ok")
        finally:
            probe.unlink(missing_ok=True)

    def is_retryable(self, error: BaseException) -> bool:
        # A missing run folder or a malformed value will not fix itself; a full disk may.
        if isinstance(error, (FileNotFoundError, NotADirectoryError, ValueError, KeyError)):
            return False
        return super().is_retryable(error)

    def run_dir(self, run_id: str) -> Path:
        return _within(self.root, run_id)

    # -- writes -------------------------------------------------------------------------

    def start_run(self, run: RunInfo) -> None:
        directory = self.run_dir(run.run_id)
        made = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "meta.json").exists():  # a replayed start keeps the first
            try:
                write_whole(directory / "meta.json", json.dumps(run.to_dict(), indent=1))
            except OSError:
                if made:  # a full disk leaves no empty run folder behind
                    with contextlib.suppress(OSError):
                        directory.rmdir()
                raise

    def log_batch(self, batch: LogBatch) -> None:
        parts: list[tuple[str, str]] = []
        if batch.metrics:
            lines = [f"{k}\t{s}\t{t}\t{v!r}\n" for k, v, s, t in batch.metrics]
            parts.append(("metrics.tsv", "".join(lines)))
        if batch.params:
            parts.append(("params.jsonl", json.dumps(batch.params) + "\n"))
        if batch.tags:
            parts.append(("tags.jsonl", json.dumps(batch.tags) + "\n"))
        # All or none: a batch whose tags do not fit on the disk leaves no metrics
        # behind, which its retry would write again.
        run_id = batch.run_id
        append_all([(self._handle(run_id, name), text) for name, text in parts], sync=False)

    def log_dataset(self, op: LogDataset) -> None:
        self._append(op.run_id, "datasets.jsonl", json.dumps(op.dataset.to_dict()) + "\n")

    def log_artifact(self, op: LogArtifact) -> None:
        target = self.run_dir(op.run_id) / "artifacts"
        if op.artifact_path:
            target = _within(target, op.artifact_path)
        source = Path(op.local_path)
        target.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, copy_function=copy_whole)
        else:
            copy_whole(source, target / source.name)

    def log_model(self, op: LogModel) -> None:
        model = op.model
        directory = _within(self.run_dir(op.run_id) / "models", model.name)
        directory.mkdir(parents=True, exist_ok=True)
        if model.payload is not None:
            write_whole(directory / "model.pkl", model.payload)
            stored = "model.pkl"
        elif model.path is not None:
            stored = Path(model.path).name
            if model.format == ModelArtifact.DIRECTORY:
                copy_folder_whole(model.path, directory / stored)
            else:
                copy_whole(model.path, directory / stored)
        else:
            raise ValueError(f"model {model.name!r} has neither a payload nor a path")
        meta = {
            "name": model.name,
            "flavor": model.flavor,
            "format": model.format,
            "file": stored,
            "metadata": model.metadata,
        }
        write_whole(directory / "model.json", json.dumps(meta, default=str, indent=1))

    def end_run(self, op: EndRun) -> None:
        self._close_run_files(op.run_id, sync=True)
        meta_path = self.run_dir(op.run_id) / "meta.json"
        info = RunInfo.from_dict(json.loads(meta_path.read_text()))
        info.status = RunStatus(op.status)
        info.end_time = op.end_time
        write_whole(meta_path, json.dumps(info.to_dict(), indent=1))

    # -- search ---------------------------------------------------------------------------

    def search_runs(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """Rows in MLflow's column conventions (see :mod:`mlhooks.backends.query`)."""
        store = LocalStore(self.root)
        runs = (store.get_run(run_id) for run_id in store.run_ids())
        return search_rows(runs, experiment, filter_string, order_by)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        self.flush()
        return LocalStore(self.root).get_run(run_id).history(key)

    def search_models(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """Every stored model as a row (see :mod:`mlhooks.backends.models`)."""
        store = LocalStore(self.root)
        runs = (store.get_run(run_id, model_payloads=False) for run_id in store.run_ids())
        return model_rows(runs, experiment, filter_string, order_by)

    def load_model(self, run_id: str, name: str) -> Any:
        """Model ``name`` of run ``run_id``, loaded (see :func:`mlhooks.load_model`)."""
        store = LocalStore(self.root)
        store.info(run_id)  # KeyError naming the store for a run it does not hold
        return loaded(model_named(run_id, store.models(run_id), name))

    def after_fork(self) -> None:
        # The parent's files stay the parent's: the child closes only its own copies
        # of their descriptors (nothing of ours is buffered in them).
        self._forked = True
        files, self._files = self._files, OrderedDict()
        for fd in files.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def flush(self) -> None:
        for fd in self._files.values():
            os.fsync(fd)

    def close(self) -> None:
        for run_id, _ in list(self._files):
            self._close_run_files(run_id, sync=True)

    # -- helpers ------------------------------------------------------------------------

    def _append(self, run_id: str, filename: str, text: str) -> None:
        # To the OS (survives a SIGKILL of this process), whole or not at all.
        append_whole(self._handle(run_id, filename), text, sync=False)

    def _handle(self, run_id: str, filename: str) -> int:
        key = (run_id, filename)
        fd = self._files.get(key)
        if fd is not None:
            self._files.move_to_end(key)
            return fd
        directory = self.run_dir(run_id)
        if not directory.is_dir():
            # In a forked child, the parent's writer may not have stored the start of a
            # run the child inherited yet: worth another try (then the spool, or sync).
            raise BackendError(
                f"run {run_id!r} was never started in {self.root}", retryable=self._forked
            )
        fd = self._files[key] = open_append(directory / filename)
        while len(self._files) > self._max_open_runs * 4:
            _, oldest = self._files.popitem(last=False)
            os.close(oldest)
        return fd

    def _close_run_files(self, run_id: str, *, sync: bool) -> None:
        for key in [k for k in self._files if k[0] == run_id]:
            fd = self._files.pop(key)
            try:
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)


def _within(base: Path, relative: str) -> Path:
    """``base / relative``, refusing (ValueError, which is never retried) a name that
    would leave ``base``: absolute, ``..``, or a symlink out of it. Names are checked
    where they enter (``mlhooks.core.validation``); this is the store's own guard, for
    spools and third-party integrations that bypass those checks."""
    path = base / relative
    root = base.resolve()
    resolved = path.resolve()
    if relative.startswith("/") or (resolved != root and root not in resolved.parents):
        raise ValueError(f"{relative!r} would be stored outside {base}")
    return path


class LocalStore:
    """Reads what :class:`LocalBackend` wrote."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def run_ids(self) -> list[str]:
        """Every run in the store, oldest first."""
        if not self.root.is_dir():
            return []
        runs = [p for p in self.root.iterdir() if (p / "meta.json").is_file()]
        return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime)]

    def runs(self) -> list[RunInfo]:
        return [self.info(run_id) for run_id in self.run_ids()]

    def info(self, run_id: str) -> RunInfo:
        path = self.root / run_id / "meta.json"
        if not path.is_file():
            raise KeyError(f"no run {run_id!r} in the local store at {self.root}")
        return RunInfo.from_dict(json.loads(path.read_text()))

    def get_run(self, run_id: str, *, model_payloads: bool = True) -> RunData:
        """Everything stored for ``run_id`` (``model_payloads=False``: the models'
        metadata only, their pickled bytes left unread)."""
        directory = self.root / run_id
        info = self.info(run_id)
        data = RunData(info=info, tags=dict(info.tags))
        for params in _read_jsonl(directory / "params.jsonl"):
            data.params.update(params)
        for tags in _read_jsonl(directory / "tags.jsonl"):
            data.tags.update(tags)
        data.metrics = read_metrics(directory / "metrics.tsv")
        data.datasets = [
            DatasetInfo.from_dict(d) for d in _read_jsonl(directory / "datasets.jsonl")
        ]
        artifacts = directory / "artifacts"
        if artifacts.is_dir():
            files = (p for p in artifacts.rglob("*") if p.is_file())
            data.artifacts = sorted(str(p.relative_to(artifacts)) for p in files)
        data.models = self.models(run_id, payloads=model_payloads)
        return data

    def models(self, run_id: str, *, payloads: bool = True) -> list[ModelArtifact]:
        """The models stored with ``run_id``, each with the path of its file and, with
        ``payloads``, a pickled one's bytes."""
        found: list[ModelArtifact] = []
        models = self.root / run_id / "models"
        if not models.is_dir():
            return found
        metas = {path: _read_json(path) for path in models.rglob("model.json")}
        folders = [  # models kept as folders: a file of theirs is not a model of its own
            path.parent / meta["file"]
            for path, meta in metas.items()
            if meta.get("format") == ModelArtifact.DIRECTORY
        ]
        for meta_path in sorted(metas):  # "a/b": nested
            meta = metas[meta_path]
            if not meta or any(folder in meta_path.parents for folder in folders):
                continue
            model = ModelArtifact(
                name=meta["name"],
                flavor=meta["flavor"],
                format=meta["format"],
                path=str(meta_path.parent / meta["file"]),
                metadata=meta["metadata"],
            )
            if payloads and meta["file"] == "model.pkl":
                model.payload = (meta_path.parent / "model.pkl").read_bytes()
            found.append(model)
        return found

    def artifact_path(self, run_id: str, path: str) -> Path:
        """Where a stored artifact file is on disk."""
        return self.root / run_id / "artifacts" / path


def _read_json(path: Path) -> dict[str, Any]:
    """A ``model.json`` file's object; empty when the file is not one of this store's
    (a file of that name among a model folder's own)."""
    try:
        found = json.loads(path.read_text())
    except ValueError:
        return {}
    return found if isinstance(found, dict) and "name" in found else {}


def read_metrics(path: Path) -> dict[str, list[Metric]]:
    """Metric points from a ``metrics.tsv``, per key in logged order."""
    metrics: dict[str, list[Metric]] = {}
    if not path.is_file():
        return metrics
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn by a kill mid-write
            key, step, timestamp, value = line[:-1].split("\t")
            points = metrics.get(key)
            if points is None:
                points = metrics[key] = []
            points.append(Metric(key, float(value), int(step), int(timestamp)))
    return metrics


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            rows.append(json.loads(line))
    return rows
