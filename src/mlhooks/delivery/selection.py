"""Which backends a run writes to: names or instances, resolved to backend objects.

The default, when nothing is given, is ``MLHOOKS_BACKENDS`` (comma-separated names),
else ``mlflow`` when its plugin is installed, else ``local``. A named backend is built
once per process, so that every run shares its writer thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlhooks.backends.base import Backend
from mlhooks.core import known_plugins, settings
from mlhooks.core.config import current_config
from mlhooks.core.host import host
from mlhooks.core.known_plugins import install_hint
from mlhooks.core.types import Capability

_by_name: dict[str, Backend] = {}
_lock = threading.Lock()
_default_override: list[Backend] | None = None


def set_default_override(backends: list[Backend] | None) -> None:
    """Make ``backends`` the default of every run (the test fixtures use this)."""
    global _default_override
    _default_override = backends


def default_backend_names() -> tuple[str, ...]:
    """What runs write to when neither ``start_run`` nor ``autolog`` names backends."""
    host.load()
    from_env: tuple[str, ...] | None = settings.get("MLHOOKS_BACKENDS")
    if from_env:
        return from_env
    return ("mlflow",) if "mlflow" in host.backends else ("local",)


def available() -> list[str]:
    host.load()
    return sorted(host.backends)


def backend_named(name: str, **options: Any) -> Backend:
    """The shared instance of the backend called ``name`` (built on first use)."""
    host.load()
    if options:
        return _build(name, options)
    with _lock:
        backend = _by_name.get(name)
        if backend is None:
            backend = _by_name[name] = _build(name, {})
        return backend


def _build(name: str, options: dict[str, Any]) -> Backend:
    factory = host.backends.get(name)
    if factory is None:
        known = ", ".join(available()) or "none"
        reason = host.failed.get(name)
        if reason:
            hint = f" (its plugin failed to load: {reason})"
        elif name in known_plugins.BACKENDS:
            hint = f" ({install_hint(known_plugins.BACKENDS[name])})"
        else:
            hint = ""
        raise ValueError(f"unknown backend {name!r}{hint}; available backends: {known}")
    backend = factory(**options)
    if not isinstance(backend, Backend):
        raise TypeError(
            f"backend factory {name!r} returned {backend!r}, not a mlhooks.plugin.Backend"
        )
    return backend


def resolve(spec: Iterable[str | Backend] | str | Backend | None) -> list[Backend]:
    """Backend objects for ``spec``: a name, an instance, a list of them, or None for
    the default. Duplicates are dropped; ValueError names an unknown backend."""
    if spec is None and _default_override is not None:
        return list(_default_override)
    if spec is None:
        items: Sequence[str | Backend] = default_backend_names()
    elif isinstance(spec, (str, Backend)):
        items = [spec]
    else:
        items = list(spec)
    if not items:
        raise ValueError("backends must name at least one backend")
    resolved: list[Backend] = []
    for item in items:
        if isinstance(item, str):
            backend = backend_named(item)
        elif isinstance(item, Backend):
            backend = item
        else:
            raise TypeError(f"backends takes names or mlhooks.plugin.Backend objects, not {item!r}")
        if all(backend is not seen for seen in resolved):
            resolved.append(backend)
    return resolved


def _forget_name(name: str) -> None:
    with _lock:
        _by_name.pop(name, None)


host.on_backend_removed(_forget_name)


def forget() -> None:
    """Drop the shared named instances (tests use this between cases)."""
    with _lock:
        _by_name.clear()


@dataclass(frozen=True)
class BackendDescription:
    """What one backend keeps and where (see :func:`describe_backends`)."""

    name: str
    location: str
    """Where it writes, for humans (``Backend.describe()``)."""
    keeps: tuple[str, ...]
    """The capabilities it has: ``metrics``, ``params``, ``tags``, ``artifacts``, ..."""
    skips: tuple[str, ...]
    """The capabilities it lacks: what it is never sent."""
    notes: dict[str, str] = field(default_factory=dict)
    """Limits of a kept capability, e.g. ``{"artifacts": "png and jpg images only"}``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "location": self.location,
            "keeps": list(self.keeps),
            "skips": list(self.skips),
            "notes": dict(self.notes),
        }


def describe(backend: Backend) -> BackendDescription:
    """What ``backend`` keeps and where it writes."""
    return BackendDescription(
        name=backend.name,
        location=backend.describe(),
        keeps=tuple(c.value for c in Capability if c in backend.capabilities),
        skips=tuple(c.value for c in Capability if c not in backend.capabilities),
        notes={c.value: note for c, note in backend.capability_notes.items()},
    )


def describe_backends(
    backends: Iterable[str | Backend] | str | Backend | None = None,
) -> list[BackendDescription]:
    """Name, location and capabilities of each backend runs write to: ``backends`` if
    given, else those of ``autolog(backends=...)``, else ``MLHOOKS_BACKENDS`` or the
    default. ValueError names an unknown backend."""
    if backends is None:
        config = current_config()
        backends = config.backends if config is not None else None
    return [describe(backend) for backend in resolve(backends)]
