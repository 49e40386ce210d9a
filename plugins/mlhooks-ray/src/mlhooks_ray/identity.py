"""What a sweep's trials know of it: plain data that travels with the trainable to the
Ray worker processes, wherever they run.

A trial's worker has none of the driver's memory: not its runs, not what ``autolog()``
was told, not its environment (on another machine). :class:`SweepIdentity` carries what
it needs: the sweep's run (to be the parent of the trial's run), the backends to write
to (each as the name and options that rebuild it, :meth:`Backend.spec`), the
``autolog()`` options, and where the driver keeps its local store. The run id of each
trial's run is derived from the sweep's run id and the trial id, so that the driver
knows it without being told (to tag the best trial, to end the run of a worker that
died).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import mlhooks
from mlhooks.plugin import Backend, RunInfo, current_config

TRIAL_RUNS = uuid.UUID("5d1c1a52-7c55-4b0e-9d61-1f3a4a2b6e90")
"""The namespace of trial run ids (uuid5 of ``<sweep run id>/<trial id>``)."""
LOCAL = "local"
"""The local store: per machine, so a worker writes to its own (see :func:`local_dir_for`)."""


@dataclass(frozen=True)
class BackendSpec:
    """One backend, as a worker builds it again: ``mlhooks.backend(name, **options)``."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepIdentity:
    """What each trial of one sweep needs to log as a child of the sweep's run."""

    run_id: str
    name: str
    experiment: str | None
    backends: tuple[BackendSpec, ...]
    autolog: Mapping[str, Any]
    """``autolog()``'s options in the driver, as keyword arguments (backends aside)."""
    local_dir: str
    """The driver's local store folder (absolute)."""
    host: str
    """The driver's machine (its host name)."""

    def parent(self) -> RunInfo:
        """The sweep's run, as the parent of a trial's run."""
        return RunInfo(run_id=self.run_id, name=self.name, experiment=self.experiment)

    def trial_run_id(self, trial_id: str) -> str:
        """The run id of trial ``trial_id``'s run (the same in the driver and the worker)."""
        return uuid.uuid5(TRIAL_RUNS, f"{self.run_id}/{trial_id}").hex


def identity_of(run: RunInfo) -> SweepIdentity:
    """The identity of a sweep logging into ``run``, as the driver knows it now."""
    config = current_config()
    given: Any = config.backends if config is not None else None
    if given is None:
        given = [description.name for description in mlhooks.describe_backends()]
    driver_root = Path(mlhooks.LocalStore().root).resolve()
    specs = tuple(_spec(item, driver_root) for item in given)
    return SweepIdentity(
        run_id=run.run_id,
        name=run.name,
        experiment=run.experiment,
        backends=specs,
        autolog=autolog_arguments(config),
        local_dir=str(driver_root),
        host=socket.gethostname(),
    )


def _spec(item: str | Backend, driver_root: Path) -> BackendSpec:
    backend = item if isinstance(item, Backend) else mlhooks.backend(item)
    options = dict(backend.spec())
    if backend.name == LOCAL and Path(str(options.get("root", driver_root))) == driver_root:
        options = {}  # the default local store: each worker's own
    return BackendSpec(backend.name, options)


def autolog_arguments(config: Any) -> dict[str, Any]:
    """``autolog()``'s keyword arguments that give ``config`` again (an
    ``AutologConfig``, or None for the defaults), but its backends."""
    if config is None:
        return {}
    arguments = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.init and f.name not in ("backends", "overrides")
    }
    arguments["extra_tags"] = dict(arguments.get("extra_tags") or {})
    arguments.update({name: dict(options) for name, options in config.overrides.items()})
    return arguments


def local_dir_for(identity: SweepIdentity, own: str | None, host: str, started_in: str) -> str:
    """The local store folder of a trial's worker on ``host``: ``own`` (its own
    ``MLHOOKS_LOCAL_DIR``) when it has one; else, on the driver's machine, the driver's
    folder (one store for the whole sweep); else ``mlhooks-runs`` in ``started_in``, the
    folder the worker started in (Tune moves each trial into a folder of its own)."""
    if own:
        return own
    if host == identity.host:
        return identity.local_dir
    return str(Path(started_in, "mlhooks-runs"))
