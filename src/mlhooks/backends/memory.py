"""An in-memory store: for tests, demos and plugin authors."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from mlhooks.backends.base import Backend, EndRun, LogArtifact, LogBatch, LogDataset, LogModel
from mlhooks.backends.models import loaded, model_named, model_rows
from mlhooks.backends.query import search_rows
from mlhooks.core.types import (
    ALL_CAPABILITIES,
    Capability,
    Metric,
    ModelArtifact,
    RunData,
    RunInfo,
    RunStatus,
)


class MemoryBackend(Backend):
    """Keeps every run in a dict: ``backend.runs[run_id]`` is a :class:`RunData`."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = ALL_CAPABILITIES
    journaled: ClassVar[bool] = False  # it dies with the process: nothing to recover

    def __init__(self) -> None:
        self.runs: dict[str, RunData] = {}
        self._lock = threading.Lock()
        self._folders: str | None = None
        """Where copies of the models kept as folders live, made on first use."""

    def start_run(self, run: RunInfo) -> None:
        with self._lock:
            info = RunInfo.from_dict(run.to_dict())
            stored = self.runs.get(run.run_id)
            if stored is not None:  # a continued run: keep what it stored before
                stored.info.status = info.status
                stored.info.end_time = None
                return
            self.runs[run.run_id] = RunData(info=info, tags=dict(info.tags))

    def log_batch(self, batch: LogBatch) -> None:
        with self._lock:
            data = self.runs[batch.run_id]
            for point in batch.metrics:
                data.metrics.setdefault(point[0], []).append(Metric._make(point))
            data.params.update(batch.params)
            data.tags.update(batch.tags)

    def log_artifact(self, op: LogArtifact) -> None:
        source = Path(op.local_path)
        if source.is_dir():
            names = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
        else:
            names = [source.name]
        prefix = f"{op.artifact_path}/" if op.artifact_path else ""
        with self._lock:
            self.runs[op.run_id].artifacts.extend(prefix + name for name in names)

    def log_model(self, op: LogModel) -> None:
        model = op.model
        path = model.path
        if model.payload is None and path is not None:  # its snapshot goes once stored
            if model.format == ModelArtifact.DIRECTORY:
                model = replace(model, path=self._copy_folder(path))
            else:
                with contextlib.suppress(OSError):  # gone already: its path is all there is
                    model = replace(model, payload=Path(path).read_bytes())
        with self._lock:
            self.runs[op.run_id].models.append(model)

    def _copy_folder(self, path: str) -> str:
        """A copy of a model's folder (a ``save_pretrained`` one), kept in a temporary
        folder of this store's that goes with it (or at exit)."""
        with self._lock:
            if self._folders is None:
                self._folders = tempfile.mkdtemp(prefix="mlhooks-memory-models-")
                weakref.finalize(self, shutil.rmtree, self._folders, ignore_errors=True)
            target = Path(self._folders) / uuid.uuid4().hex / Path(path).name
        shutil.copytree(path, target)
        return str(target)

    def log_dataset(self, op: LogDataset) -> None:
        with self._lock:
            self.runs[op.run_id].datasets.append(op.dataset)

    def end_run(self, op: EndRun) -> None:
        with self._lock:
            info = self.runs[op.run_id].info
            info.status = RunStatus(op.status)
            info.end_time = op.end_time

    def search_runs(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """Rows in MLflow's column conventions (see :mod:`mlhooks.backends.query`)."""
        with self._lock:
            runs = list(self.runs.values())
        return search_rows(runs, experiment, filter_string, order_by)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return list(self.run(run_id).history(key))

    def search_models(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """Every stored model as a row (see :mod:`mlhooks.backends.models`)."""
        with self._lock:
            runs = list(self.runs.values())
        return model_rows(runs, experiment, filter_string, order_by)

    def load_model(self, run_id: str, name: str) -> Any:
        """Model ``name`` of run ``run_id``, loaded (see :func:`mlhooks.load_model`)."""
        return loaded(model_named(run_id, self.run(run_id).models, name))

    def run(self, run_id: str) -> RunData:
        """The stored run; ``KeyError`` naming the id when there is none."""
        try:
            return self.runs[run_id]
        except KeyError:
            raise KeyError(f"no run {run_id!r} in this memory backend") from None

    def only_run(self) -> RunData:
        """The single stored run (for tests that expect exactly one)."""
        if len(self.runs) != 1:
            raise AssertionError(f"expected exactly one run, found {len(self.runs)}")
        return next(iter(self.runs.values()))

    def models(self) -> list[ModelArtifact]:
        return [model for data in self.runs.values() for model in data.models]
