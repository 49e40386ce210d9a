"""The data that flows through mlhooks: runs, fits, datasets, models and metric points.

Everything here is a plain dataclass so that plugins can build, read and serialise it
without importing anything else from mlhooks.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch, as MLflow stores it."""
    return time.time_ns() // 1_000_000


class RunStatus(str, enum.Enum):
    """How a run ended. The values are MLflow's status names."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @classmethod
    def for_exception(cls, error: BaseException | None) -> RunStatus:
        """FINISHED without an error (or for ``sys.exit(0)``), KILLED for Ctrl-C,
        FAILED for anything else (``sys.exit(n)`` with ``n`` not 0 included)."""
        if error is None:
            return cls.FINISHED
        if isinstance(error, SystemExit):
            return cls.FINISHED if error.code in (0, None) else cls.FAILED
        if isinstance(error, KeyboardInterrupt):
            return cls.KILLED
        return cls.FAILED


class Capability(str, enum.Enum):
    """What a backend can store. The recorder only sends a backend what it declares."""

    METRICS = "metrics"
    PARAMS = "params"
    TAGS = "tags"
    ARTIFACTS = "artifacts"
    MODELS = "models"
    DATASETS = "datasets"


ALL_CAPABILITIES = frozenset(Capability)


@dataclass
class RunInfo:
    """A tracked run. ``run_id`` is ours; backends may map it to ids of their own."""

    run_id: str
    name: str
    experiment: str | None = None
    parent_id: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int = field(default_factory=now_ms)
    end_time: int | None = None
    status: RunStatus = RunStatus.RUNNING
    managed: bool = False
    """True when mlhooks opened the run for a fit and will close it."""
    backend_ids: dict[str, str] = field(default_factory=dict)
    """Ids that backends gave this run, by backend name (e.g. an MLflow run id)."""
    new: bool = field(default=False, compare=False)
    """True when this process made the run's id up and no backend tried to create it
    yet: no store can hold it, so the first backend need not look for it before
    creating it (and sets it False). The recorder hands it from the run to the run's
    start operation. Not kept in :meth:`to_dict`: a run read back (from a spool, say)
    may exist and is looked for."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "experiment": self.experiment,
            "parent_id": self.parent_id,
            "description": self.description,
            "tags": dict(self.tags),
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status.value,
            "managed": self.managed,
            "backend_ids": dict(self.backend_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        values = dict(data)
        values["status"] = RunStatus(values.get("status", "RUNNING"))
        return cls(**values)


class Metric(NamedTuple):
    """One metric point. ``step`` and ``timestamp`` (ms) are kept exactly."""

    key: str
    value: float
    step: int
    timestamp: int


@dataclass
class DatasetInfo:
    """A fingerprint of the data a model saw, cheap to compute and stable across processes."""

    name: str
    digest: str
    context: str = "train"
    shape: tuple[int, ...] | None = None
    schema: dict[str, str] | None = None
    """Column (or feature) name -> dtype name."""
    source: str | None = None
    kind: str = "unknown"
    """What the data was: ``numpy``, ``pandas``, ``scipy.sparse``, ``list``, ..."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "context": self.context,
            "shape": list(self.shape) if self.shape is not None else None,
            "schema": self.schema,
            "source": self.source,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        values = dict(data)
        if values.get("shape") is not None:
            values["shape"] = tuple(values["shape"])
        return cls(**values)


@dataclass
class ModelArtifact:
    """A model to store, captured at the moment it was reported.

    ``payload`` holds the model's bytes (a pickle unless ``format`` says otherwise:
    ``cloudpickle`` for one that carries code of the user's script by value), taken
    when it was logged so that a later refit cannot change what is stored. ``path`` is
    set instead for models that already live in a file (checkpoints), or in a folder
    of files (format :attr:`DIRECTORY`: a Transformers ``save_pretrained`` folder). A
    model that could not be captured at all has neither, the format :attr:`UNSAVEABLE`
    and the reason in ``metadata["reason"]``: backends set it aside with that reason.
    """

    PICKLED: ClassVar[frozenset[str]] = frozenset({"pickle", "cloudpickle"})
    UNSAVEABLE: ClassVar[str] = "unsaveable"
    DIRECTORY: ClassVar[str] = "directory"
    """``path`` is a folder: the model's files, as its framework saved them."""

    name: str
    flavor: str
    payload: bytes | None = None
    path: str | None = None
    format: str = "pickle"
    metadata: dict[str, Any] = field(default_factory=dict)
    """Flavor-specific facts: signature, input example, monitor value, best/last, ..."""

    STEP_KEYS: ClassVar[tuple[str, ...]] = ("step", "global_step", "iteration")
    """Metadata that says at which training step a model was saved (a checkpoint's)."""

    @property
    def step(self) -> int | None:
        """The training step the model was saved at (a checkpoint's ``global_step`` or
        boosting ``iteration``), None for a model of the whole fit."""
        for key in self.STEP_KEYS:
            value = self.metadata.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    def load(self) -> Any:
        """The model object, rebuilt from the captured payload (pickle and cloudpickle
        formats; the latter needs cloudpickle installed)."""
        if self.payload is None or self.format not in self.PICKLED:
            raise ValueError(f"model {self.name!r} has no pickled payload to load")
        import pickle

        return pickle.loads(self.payload)


@dataclass
class Fit:
    """One tracked training call (``fit``, ``train``, ``Trainer.fit``).

    Integrations fill ``params`` and ``tags`` before the fit starts; listeners may read
    ``model`` (the live object being trained) but must not change it.
    """

    framework: str
    name: str
    run: RunInfo
    model: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    """Set when the fit raised; ``on_fit_end`` still runs."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Scratch space for the integration that owns this fit."""


@dataclass
class RunData:
    """Everything stored for one run, as read back from a store."""

    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[Metric]] = field(default_factory=dict)
    """Every point of every metric key, in the order they were logged."""
    datasets: list[DatasetInfo] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    """Paths of stored artifact files, relative to the run's artifact root."""
    models: list[ModelArtifact] = field(default_factory=list)

    def history(self, key: str) -> list[Metric]:
        """Every point of metric ``key`` (empty when never logged)."""
        return self.metrics.get(key, [])

    def latest(self) -> dict[str, float]:
        """The last value logged for each metric key."""
        return {key: points[-1].value for key, points in self.metrics.items() if points}
