"""mlhooks: experiment tracking for Python machine learning, in one line.

    import mlhooks
    mlhooks.autolog()   # every fit of every installed framework is tracked

This module is what users call and nothing else. Plugin authors (framework
integrations, storage backends) import :mod:`mlhooks.plugin` as well.
"""

from __future__ import annotations

from mlhooks.autologging.autolog import autolog
from mlhooks.backends.local import LocalStore
from mlhooks.capture.datasets import fingerprint
from mlhooks.core.config import AutologConfig
from mlhooks.core.errors import MlhooksWarning
from mlhooks.core.hookspecs import hookimpl
from mlhooks.core.host import add_builtins as _add_builtins
from mlhooks.core.host import host as _host
from mlhooks.core.redaction import add_redaction_patterns
from mlhooks.core.types import (
    Capability,
    DatasetInfo,
    Metric,
    RunData,
    RunInfo,
    RunStatus,
)
from mlhooks.core.version import VERSION
from mlhooks.delivery.builtins import builtin_plugins as _builtin_plugins
from mlhooks.delivery.selection import BackendDescription, describe_backends
from mlhooks.delivery.selection import backend_named as backend
from mlhooks.reports.compare import compare_runs, plot_metric
from mlhooks.reports.models import load_model, search_models
from mlhooks.reports.report import write_report
from mlhooks.reports.search import get_metric_history, search_runs
from mlhooks.tracking.logging_api import (
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
from mlhooks.tracking.runs import ActiveRun, active_run, end_run, start_run

__version__ = VERSION

_add_builtins(_builtin_plugins)  # the recorder and the local and memory stores

_PLUGIN_API = frozenset(
    {"Backend", "BackendError", "Call", "CallHandler", "Fit", "FitHandler", "FitSession",
     "Integration", "ModelArtifact"}
)  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _PLUGIN_API:
        raise AttributeError(
            f"mlhooks.{name} is part of the plugin API: from mlhooks.plugin import {name}"
        )
    raise AttributeError(f"module 'mlhooks' has no attribute {name!r}")


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
    "BackendDescription",
    "Capability",
    "DatasetInfo",
    "LocalStore",
    "Metric",
    "MlhooksWarning",
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
    "load_model",
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
    "search_models",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
    "unregister",
    "write_report",
]
