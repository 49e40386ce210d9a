"""What ``mlhooks doctor`` reports: the installed frameworks and plugins, what
``autolog()`` would patch, where data goes and whether each backend answers."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from mlhooks.autologging.integration import Integration
from mlhooks.backends.local import default_root
from mlhooks.core import known_plugins
from mlhooks.core import settings as mlhooks_settings
from mlhooks.core.host import ENTRY_POINT_GROUP, host
from mlhooks.core.known_plugins import install_hint
from mlhooks.core.redaction import redact
from mlhooks.delivery import selection
from mlhooks.delivery.journal import count_records, find_journals, owner_alive, service_marker
from mlhooks.delivery.spool import find_spools


@dataclass
class FrameworkReport:
    name: str
    plugin: str
    version: str | None
    """None when the framework is not installed."""
    supported_range: str
    problem: str | None = None
    """Why autolog() would not track it (unsupported version, not installed, ...)."""
    patches: list[str] = field(default_factory=list)
    """The attributes autolog() patches, e.g. ``sklearn.linear_model.Ridge.fit``."""


@dataclass
class PluginReport:
    name: str
    distribution: str | None
    version: str | None
    loaded: bool
    problem: str | None = None


@dataclass
class BackendReport:
    name: str
    default: bool
    where: str | None = None
    keeps: list[str] = field(default_factory=list)
    """Its capabilities (``mlhooks.describe_backends``): what it stores."""
    skips: list[str] = field(default_factory=list)
    """What it is never sent."""
    notes: dict[str, str] = field(default_factory=dict)
    answers: bool | None = None
    """None when not checked (not a default backend)."""
    problem: str | None = None


def frameworks(*, probe: bool = True) -> list[FrameworkReport]:
    """Every registered integration; with ``probe``, its modules are imported and
    patched for a moment to list what ``autolog()`` patches, then unpatched."""
    host.load()
    reports = []
    for integration in host.iter_integrations():
        report = FrameworkReport(
            name=integration.name,
            plugin=integration.plugin_name,
            version=integration.installed_version(),
            supported_range=integration.supported_range(),
        )
        if report.version is None and not _importable(integration.modules[0]):
            report.problem = "not installed"
        else:
            report.problem = integration.unsupported_reason()
        if probe and report.problem is None:
            try:
                report.patches = _what_it_patches(integration)
            except Exception as error:  # noqa: BLE001 - doctor reports, never raises
                report.problem = f"patching failed: {type(error).__name__}: {error}"
            if report.version is None:  # some frameworks tell their version once imported
                report.version = integration.installed_version()
                report.problem = report.problem or integration.unsupported_reason()
        reports.append(report)
    return reports + untracked_frameworks()


def untracked_frameworks() -> list[FrameworkReport]:
    """Frameworks that are installed while the plugin that tracks them is not."""
    tracked = {m.split(".")[0] for i in host.iter_integrations() for m in i.modules}
    reports = []
    for name, (module, distribution) in known_plugins.FRAMEWORKS.items():
        if module in tracked or not _importable(module):
            continue
        reports.append(
            FrameworkReport(
                name=name,
                plugin="-",
                version=_distribution_version(module),
                supported_range="-",
                problem=f"not tracked: {install_hint(distribution)}",
            )
        )
    return reports


def _distribution_version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        names = {"sklearn": "scikit-learn"}
        try:
            return importlib.metadata.version(names.get(module, module))
        except importlib.metadata.PackageNotFoundError:
            return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _what_it_patches(integration: Integration) -> list[str]:
    was_patched = integration.is_patched
    try:
        for module_name in integration.modules:
            integration.patch(importlib.import_module(module_name))
        return sorted({_qualified(owner, attribute) for owner, attribute in _patched(integration)})
    finally:
        if not was_patched:
            integration.unpatch()


def _patched(integration: Integration) -> list[tuple[Any, str]]:
    return integration.patcher.patched


def _qualified(owner: Any, attribute: str) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{attribute}"
    return f"{getattr(owner, '__name__', repr(owner))}.{attribute}"


def plugins() -> list[PluginReport]:
    """Every entry point in the ``mlhooks`` group, loaded or not."""
    host.load()
    loaded = set(host.plugin_names())
    reports = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        name = entry_point.name
        problem = host.failed.get(name)
        if name not in loaded and problem is None:
            problem = "disabled (MLHOOKS_PLUGINS / MLHOOKS_DISABLE_PLUGINS)"
        reports.append(
            PluginReport(
                name=name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                loaded=name in loaded,
                problem=problem,
            )
        )
    return reports


def backends(names: list[str] | None = None) -> list[BackendReport]:
    """Every available backend with what it keeps; the default ones (or ``names``)
    are built and asked whether they answer."""
    host.load()
    chosen = names or list(selection.default_backend_names())
    reports = []
    for name in sorted(set(selection.available()) | set(chosen)):
        report = BackendReport(name=name, default=name in chosen)
        try:
            backend = selection.backend_named(name)
            description = selection.describe(backend)
            report.where = description.location
            report.keeps = list(description.keeps)
            report.skips = list(description.skips)
            report.notes = dict(description.notes)
            if report.default:
                backend.check()
                report.answers = True
        except Exception as error:  # noqa: BLE001 - doctor reports, never raises
            report.problem = f"{type(error).__name__}: {error}"
            if report.default:
                report.answers = False
        reports.append(report)
    return reports


def settings() -> dict[str, str]:
    """The ``MLHOOKS_*`` (and ``MLFLOW_TRACKING_URI``) variables set now; an unknown or
    malformed ``MLHOOKS_*`` variable says so (a typo is otherwise silently ignored)."""
    host.load()  # plugins declare their own variables
    keys = sorted(k for k in os.environ if k.startswith("MLHOOKS_"))
    keys += [k for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME") if k in os.environ]
    shown = redact({key: os.environ[key] for key in keys})
    for key in keys:
        problem = setting_problem(key) if key.startswith("MLHOOKS_") else None
        if problem:
            shown[key] = f"{shown[key]}  ({problem})"
    return shown


def setting_problem(name: str) -> str | None:
    """Why the ``MLHOOKS_*`` variable ``name`` is not used as set, or None."""
    if name not in mlhooks_settings.VARIABLES:
        close = difflib.get_close_matches(name, list(mlhooks_settings.VARIABLES), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"not an mlhooks setting, ignored{hint}"
    try:
        mlhooks_settings.get(name)
    except ValueError as error:
        return f"invalid: {error}"
    return None


@dataclass
class Waiting:
    """What is on disk and not stored yet, under the local dir."""

    root: str
    dead_journals: int = 0
    """Journals of processes that died before their exit sequence."""
    live_journals: int = 0
    spools: int = 0
    rejected: int = 0
    services: dict[int, int] = field(default_factory=dict)
    """Writer services at work: pid -> operations they have not stored yet."""
    serving: dict[int, list[int]] = field(default_factory=dict)
    """Writer services at work: pid -> the training processes whose journals they
    deliver (several for a process tree whose children attached to one service)."""
    held: list[int] = field(default_factory=list)
    """Writer services that hold their backends' start back while their process's
    first fit trains (see ``mlhooks.delivery.service_gate``)."""
    service_enabled: bool = False
    """Whether ``MLHOOKS_SERVICE`` turns the writer service on here."""

    @property
    def to_sync(self) -> bool:
        return bool(self.dead_journals or self.spools)


def waiting() -> Waiting:
    """Journals and spools under the local dir that `mlhooks sync` would deliver."""
    root = default_root()
    journals = find_journals(root)
    services: dict[int, int] = {}
    serving: dict[int, list[int]] = {}
    held: set[int] = set()
    dead = 0
    for journal in journals:
        marker = service_marker(journal.path)
        if marker is not None:
            pid, holds_back = marker
            if holds_back:
                held.add(pid)
            try:
                backlog = max(0, count_records(journal) - journal.delivered())
                owner = journal.header().pid
            except (OSError, ValueError, KeyError):
                continue  # finished and removed meanwhile
            services[pid] = services.get(pid, 0) + backlog
            owners = serving.setdefault(pid, [])
            if owner not in owners:
                owners.append(owner)
        elif not owner_alive(journal.path):
            dead += 1
    try:
        enabled = bool(mlhooks_settings.get("MLHOOKS_SERVICE"))
    except ValueError:
        enabled = False  # shown as malformed among the settings
    return Waiting(
        str(root),
        dead_journals=dead,
        live_journals=len(journals) - dead,
        services=services,
        serving={pid: sorted(owners) for pid, owners in serving.items()},
        held=sorted(held),
        service_enabled=enabled,
        spools=len(find_spools(root / ".spool")),
        rejected=len(find_spools(root / ".spool" / "rejected")),
    )
