"""Storage backends: the contract every backend implements (``base``: ``Backend``,
the operations it applies, ``BackendError``), the two built-in stores (``local``,
append-only files; ``memory``, for tests) and MLflow's filter syntax for stores
without a query language (``query``).

May import: ``mlhooks.core`` only.
"""

from mlhooks.backends.base import (
    Backend,
    BackendError,
    BackendFactory,
    Bundle,
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
    "Bundle",
    "EndRun",
    "LogArtifact",
    "LogBatch",
    "LogDataset",
    "LogModel",
    "Operation",
    "StartRun",
]
