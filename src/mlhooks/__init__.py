"""mlhooks: experiment tracking for Python machine learning, in one line.

    import mlhooks
    mlhooks.autolog()   # every fit of every installed framework is tracked

This module is the public API and nothing else.
"""

from __future__ import annotations

from .autologging import autolog
from .backends.base import Backend, BackendError
from .backends.local import LocalStore
from .compare import compare_runs, plot_metric
from .config import AutologConfig
from .datasets import fingerprint
from .errors import MlhooksWarning
from .fitting import FitHandler, FitSession
from .hookspecs import hookimpl
from .integration import Integration
from .logging_api import (
    flush,
    log_artifact,
    log_artifacts,
    log_dataset,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    set_tag,
    set_tags,
)
from .patching import Call, CallHandler
from .plugins import host as _host
from .redaction import add_redaction_patterns
from .report import write_report
from .runs import ActiveRun, active_run, end_run, start_run
from .search import get_metric_history, search_runs
from .selection import BackendDescription, describe_backends
from .selection import backend_named as backend
from .types import (
    Capability,
    DatasetInfo,
    Fit,
    Metric,
    ModelArtifact,
    RunData,
    RunInfo,
    RunStatus,
)

__version__ = "0.1.0"


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module from user code; returns its name."""
    _host.load()
    return _host.register(plugin, name=name)


def unregister(plugin: object) -> None:
    """Remove a plugin registered with :func:`register` (its patches are undone)."""
    _host.unregister(plugin)


def list_plugins() -> list[str]:
    """Names of the registered plugins."""
    _host.load()
    return _host.plugin_names()


__all__ = [
    "ActiveRun",
    "AutologConfig",
    "Backend",
    "BackendDescription",
    "BackendError",
    "Call",
    "CallHandler",
    "Capability",
    "DatasetInfo",
    "Fit",
    "FitHandler",
    "FitSession",
    "Integration",
    "LocalStore",
    "Metric",
    "MlhooksWarning",
    "ModelArtifact",
    "RunData",
    "RunInfo",
    "RunStatus",
    "active_run",
    "add_redaction_patterns",
    "autolog",
    "backend",
    "compare_runs",
    "describe_backends",
    "end_run",
    "fingerprint",
    "flush",
    "get_metric_history",
    "hookimpl",
    "list_plugins",
    "log_artifact",
    "log_artifacts",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "plot_metric",
    "register",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
    "unregister",
    "write_report",
]
