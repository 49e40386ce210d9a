"""The public plugin API: everything a framework integration or a storage backend needs.

A plugin imports two modules of mlhooks, this one and ``mlhooks`` (what users call),
and nothing else; the plugins mlhooks ships are held to that by the lint
(import-linter), so what they can do, a third party can do too.

* Frameworks: subclass :class:`Integration` (what to patch, which versions), patch
  with :meth:`Integration.wrap` and a :class:`CallHandler`, usually a
  :class:`FitHandler` whose :class:`FitSession` reports the fit. Declare what
  ``autolog(<name>={...})`` takes as a :class:`FrameworkOptions` dataclass
  (``Integration.options``) and read it typed with ``MyOptions.of(session.settings)``
  or :func:`settings_for`; runs beside the user's come from :func:`open_run`.
  A fit on a thread pool's worker while another tracked fit runs (a search's
  candidates on joblib's threads) is part of that one: see :func:`helper_thread_of_a_fit`.
  User code that a patched call runs (an objective, a callback) has its own fits tracked
  inside :func:`user_code`; :func:`suppressed` does the opposite.
* Backends: subclass :class:`Backend`, apply the operations (:class:`StartRun`,
  :class:`LogBatch`, ...), raise :class:`BackendError` for what is worth retrying. A
  backend whose every write is costly may store several operations of a run at once
  (:meth:`Backend.bundles`, :class:`Bundle`).
* Listeners: functions marked :data:`hookimpl` (see :mod:`mlhooks.core.hookspecs`).
* Secrets: pass text you show or store yourself (a location with a URL, a message)
  through :func:`redact_text`; params and tags are masked by the recorder.
* Errors: report your own problems with :func:`report_internal_error` (training
  thread) or :func:`warn_background` (writer thread); never raise into training.
* Processes: :func:`in_writer_service` says whether this process is the writer
  service, where no user code runs (a backend may set its library's process-wide
  state there; anywhere else that state is the user's). :func:`start_writer_service_now`
  has it start its backends at once, not once the first fit gave it a moment, for a
  process whose runs must be stored as soon as its fit ends (a Ray Tune worker).
* Settings and lifetime: declare your own ``MLHOOKS_*`` variables with
  :func:`declare_setting` (a yes/no one parsed by :func:`parse_flag`) and read them
  with :func:`setting`; close what you hold open at exit with :func:`at_exit` (before
  mlhooks ends runs and stores what is queued) and reset per-process state in a forked
  child with :func:`in_forked_child`.
  :func:`current_config` is what ``autolog()`` was last told (None while it is off),
  for an integration that starts autologging elsewhere as the user asked here (the
  trials of a Ray Tune sweep, in their worker processes).
* Tests: :class:`IntegrationContract` (the safety rules as inherited tests; imports
  pytest, so it is loaded on first use) and the fixtures of ``mlhooks.testing``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlhooks.autologging.autolog import settings_for
from mlhooks.autologging.fitting import FitHandler, FitSession
from mlhooks.autologging.integration import Integration
from mlhooks.autologging.patching import Call, CallHandler, suppressed, user_code
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
from mlhooks.capture.charts import bar_chart_svg
from mlhooks.capture.models import capture as capture_model
from mlhooks.core import settings as _settings
from mlhooks.core.activity import helper_thread_of_a_fit
from mlhooks.core.config import current_config
from mlhooks.core.errors import (
    MlhooksWarning,
    notice_once,
    report_background_error,
    report_internal_error,
    warn_background,
    warn_once,
)
from mlhooks.core.hookspecs import hookimpl
from mlhooks.core.options import FrameworkOptions
from mlhooks.core.processes import is_writer_service as in_writer_service
from mlhooks.core.redaction import redact_text
from mlhooks.core.shutdown import at_exit, in_forked_child
from mlhooks.core.types import (
    Capability,
    DatasetInfo,
    Fit,
    Metric,
    ModelArtifact,
    RunData,
    RunInfo,
    RunStatus,
)
from mlhooks.delivery.service_client import start_now as start_writer_service_now
from mlhooks.tracking.runs import current_run, open_run

if TYPE_CHECKING:
    from mlhooks.testing.contract import IntegrationContract

declare_setting = _settings.declare
parse_flag = _settings.flag
setting = _settings.get

_LAZY = {"IntegrationContract": "mlhooks.testing.contract"}


def __getattr__(name: str) -> Any:
    """Names whose modules import pytest are loaded when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlhooks.plugin' has no attribute {name!r}")


__all__ = [
    "Backend",
    "BackendError",
    "BackendFactory",
    "Bundle",
    "Call",
    "CallHandler",
    "Capability",
    "DatasetInfo",
    "EndRun",
    "Fit",
    "FitHandler",
    "FitSession",
    "FrameworkOptions",
    "Integration",
    "IntegrationContract",
    "LogArtifact",
    "LogBatch",
    "LogDataset",
    "LogModel",
    "Metric",
    "MlhooksWarning",
    "ModelArtifact",
    "Operation",
    "RunData",
    "RunInfo",
    "RunStatus",
    "StartRun",
    "at_exit",
    "bar_chart_svg",
    "capture_model",
    "current_config",
    "current_run",
    "declare_setting",
    "helper_thread_of_a_fit",
    "hookimpl",
    "in_forked_child",
    "in_writer_service",
    "notice_once",
    "open_run",
    "parse_flag",
    "redact_text",
    "report_background_error",
    "report_internal_error",
    "setting",
    "settings_for",
    "start_writer_service_now",
    "suppressed",
    "user_code",
    "warn_background",
    "warn_once",
]
