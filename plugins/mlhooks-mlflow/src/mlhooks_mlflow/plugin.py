"""The plugin object behind the ``mlflow`` entry point: the backend, and runs opened
with ``mlflow.start_run()`` adopted as the run mlhooks logs into."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import mlhooks
from mlhooks import RunInfo

from .backend import MlflowBackend

_adopted: dict[str, RunInfo] = {}


@mlhooks.hookimpl
def register_backends(register: Callable[[str, Any], None]) -> None:
    register("mlflow", MlflowBackend)


@mlhooks.hookimpl
def find_active_run() -> RunInfo | None:
    """The run of ``mlflow.start_run()``, when one is active on this thread."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not hasattr(mlflow, "active_run"):
        return None  # MLflow not imported (or being imported): no run of its own
    active = mlflow.active_run()
    if active is None:
        return None
    run_id = active.info.run_id
    info = _adopted.get(run_id)
    if info is None:
        info = RunInfo(
            run_id=run_id,
            name=active.info.run_name or run_id,
            tags={},
            start_time=active.info.start_time,
            backend_ids={"mlflow": run_id},
        )
        _adopted[run_id] = info
    return info
