"""Storage backends: the contract and the two built-in stores (local files, memory)."""

from .base import (
    Backend,
    BackendError,
    BackendFactory,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    Operation,
    StartRun,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendFactory",
    "EndRun",
    "LogArtifact",
    "LogBatch",
    "LogDataset",
    "LogModel",
    "Operation",
    "StartRun",
]
