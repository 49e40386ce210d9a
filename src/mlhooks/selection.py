"""Which backends a run writes to: names or instances, resolved to backend objects.

The default, when nothing is given, is ``MLHOOKS_BACKENDS`` (comma-separated names),
else ``mlflow`` when its plugin is installed, else ``local``. A named backend is built
once per process, so that every run shares its writer thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .backends.base import Backend
from .config import env_list
from .plugins import host

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
    from_env = env_list("MLHOOKS_BACKENDS")
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
        hint = f" (its plugin failed to load: {reason})" if reason else ""
        raise ValueError(f"unknown backend {name!r}{hint}; available backends: {known}")
    backend = factory(**options)
    if not isinstance(backend, Backend):
        raise TypeError(f"backend factory {name!r} returned {backend!r}, not a mlhooks.Backend")
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
            raise TypeError(f"backends takes names or mlhooks.Backend objects, not {item!r}")
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
