"""A bundle of a run's operations folded into what MLflow writes at once.

The writer hands the backend consecutive operations of one run that reached it
together (``Backend.bundles``): a new run's start, the run context's tags, its file,
a fit's params and tags, its datasets. Stored one by one, each is a write of its own
(a transaction of a SQL store, a request to a server; ``log_batch`` even writes params
and tags apart). Folded, a new run is created with every tag, its params go in one
``log_batch`` and its datasets in one ``log_inputs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlhooks.plugin import LogArtifact, LogBatch, LogDataset, Operation, StartRun

from . import mlflow_api as mlf

SET_BY_CREATION = frozenset({"mlflow.runName", "mlflow.user"})
"""Tags that ``create_run`` reads for the run itself (its name, its user): a logged
value is set after the run is created, as it would be one by one."""


@dataclass
class Folded:
    """A bundle's operations by what MLflow writes for them, in the bundle's order
    (a tag logged twice keeps its later value)."""

    run_id: str
    start: StartRun | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[LogDataset] = field(default_factory=list)
    files: list[LogArtifact] = field(default_factory=list)

    @classmethod
    def of(cls, ops: list[Operation]) -> Folded | None:
        """``ops`` folded, or None when they cannot be (a param given two values, which
        MLflow refuses and only one by one sets aside alone; a start after the first
        operation; an operation the backend does not bundle)."""
        first = ops[0]
        folded = cls(first.run.run_id if isinstance(first, StartRun) else first.run_id)
        for index, op in enumerate(ops):
            if isinstance(op, StartRun) and index == 0:
                folded.start = op
            elif isinstance(op, LogBatch) and not op.metrics:
                if any(folded.params.get(k, v) != v for k, v in op.params.items()):
                    return None
                folded.params.update(op.params)
                folded.tags.update(op.tags)
            elif isinstance(op, LogDataset):
                folded.datasets.append(op)
            elif isinstance(op, LogArtifact):
                folded.files.append(op)
            else:
                return None
        return folded

    @staticmethod
    def creation_takes(key: str) -> bool:
        """Whether a logged tag (its key clean) may be written with the run's creation:
        ``create_run`` checks no keys, so one that ``log_batch`` would refuse (too long)
        is left to it, to be refused and set aside alone."""
        return key not in SET_BY_CREATION and len(key) <= mlf.MAX_ENTITY_KEY_LENGTH
