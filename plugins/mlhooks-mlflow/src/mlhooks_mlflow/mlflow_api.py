"""MLflow's classes and limits, imported on first use.

The backend uses them on the writer thread (or in the writer service), so importing
the backend, as ``mlhooks.autolog()`` does, does not import MLflow: a training
process that does not use MLflow itself never pays for its import.
"""

from __future__ import annotations

import concurrent.futures.process
import concurrent.futures.thread  # noqa: F401 - see below
import importlib
import threading
from typing import Any

# MLflow imports modules that register exit hooks with ``threading`` as they are
# imported, which Python refuses once the interpreter began to shut down. The writer
# thread imports MLflow before its first write, which for a short script is at exit:
# those two are imported here, when the backend is (at ``autolog()``), so that it can.

_HOMES = {
    "Dataset": "mlflow.entities",
    "DatasetInput": "mlflow.entities",
    "InputTag": "mlflow.entities",
    "Metric": "mlflow.entities",
    "Param": "mlflow.entities",
    "RunStatus": "mlflow.entities",
    "RunTag": "mlflow.entities",
    "MlflowException": "mlflow.exceptions",
    "RestException": "mlflow.exceptions",
    "MlflowClient": "mlflow.tracking",
    "MAX_ENTITY_KEY_LENGTH": "mlflow.utils.validation",
    "MAX_METRICS_PER_BATCH": "mlflow.utils.validation",
    "MAX_PARAM_VAL_LENGTH": "mlflow.utils.validation",
    "MAX_PARAMS_TAGS_PER_BATCH": "mlflow.utils.validation",
    "MAX_TAG_VAL_LENGTH": "mlflow.utils.validation",
}


_PACKAGES = (
    "mlflow",
    "mlflow.entities",
    "mlflow.exceptions",
    "mlflow.tracking",
    "mlflow.utils.validation",
    "mlflow.utils.rest_utils",
)
_lock = threading.Lock()
_loaded = False


def load() -> None:
    """Import MLflow, once and on one thread at a time: its package imports itself in
    cycles, and two threads importing it at once (the writer and the outage watch)
    deadlock or see it half-initialized."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for package in _PACKAGES:
                importlib.import_module(package)
            _loaded = True


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load()
    return getattr(importlib.import_module(home), name)
