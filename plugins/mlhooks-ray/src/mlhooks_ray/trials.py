"""One trial's run, in the trial's Ray worker process.

The worker first autologs as the driver asked (:func:`prepare_worker`: the same
``autolog()`` options, the same backends rebuilt from their specs, its own local
store). The trial's run is a child of the sweep's run, opened on the thread that runs
the user's code (so that it is the active run there, and the fits the code makes log
into it), with the trial's config as params; each result the trainable reports is
logged at its ``training_iteration``; the run ends with the trial (as its code
returns, before Tune hears of it; else when Tune stops it), and what was logged is
stored before the worker may go away.
"""

from __future__ import annotations

import numbers
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

from ray.tune.result import (
    AUTO_RESULT_KEYS,
    DONE,
    EXPERIMENT_TAG,
    RESULT_DUPLICATE,
    SHOULD_CHECKPOINT,
    TRIAL_ID,
)

import mlhooks
from mlhooks.plugin import (
    Backend,
    FitSession,
    RunInfo,
    RunStatus,
    open_run,
    setting,
    start_writer_service_now,
)

from .identity import SweepIdentity, local_dir_for
from .options import RayOptions

FRAMEWORK = "ray"
TRIAL_ID_TAG = "ray.tune.trial.id"
STATUS_TAG = "ray.tune.trial.status"
"""``TERMINATED`` (the trial ran to its end, or was stopped by a scheduler or a stop
criterion) or ``ERROR``, as Tune names them."""
NOT_REPORTED = frozenset(
    {*AUTO_RESULT_KEYS, DONE, EXPERIMENT_TAG, RESULT_DUPLICATE, SHOULD_CHECKPOINT, TRIAL_ID}
)
"""What Tune adds to a result: only what the trainable reported is logged."""

LOCAL_DIR = "MLHOOKS_LOCAL_DIR"
_backends: dict[tuple[str, str], Backend] = {}
"""The backends this worker built, by name and options: one writer each, for every trial."""


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``outer/inner`` keys, as Tune flattens results and configs."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def reported_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values a trainable reported (not Tune's own, nor booleans)."""
    return {
        key: float(value)
        for key, value in flatten(result).items()
        if key not in NOT_REPORTED
        and not isinstance(value, bool)
        and isinstance(value, numbers.Real)
    }


def prepare_worker(identity: SweepIdentity) -> list[Backend]:
    """Autolog in this worker as the driver does (also when the trainable calls
    ``autolog()`` itself, which then has the last word); the backends to write to."""
    started_in = os.environ.get("TUNE_ORIG_WORKING_DIR") or os.getcwd()
    own: str | None = setting(LOCAL_DIR)
    folder = local_dir_for(identity, own, socket.gethostname(), started_in)
    os.environ[LOCAL_DIR] = folder  # where this process's mlhooks keeps its files
    backends = [_backend(spec.name, spec.options) for spec in identity.backends]
    mlhooks.autolog(backends=backends, **identity.autolog)
    return backends


def _backend(name: str, options: Mapping[str, Any]) -> Backend:
    if not options:
        return mlhooks.backend(name)  # the process's shared instance
    key = (name, repr(sorted(options.items())))
    built = _backends.get(key)
    if built is None:
        built = _backends[key] = mlhooks.backend(name, **options)
    return built


class TrialRun:
    """The run of one trial, from its start to its end, in the trial's worker."""

    def __init__(
        self,
        identity: SweepIdentity,
        trial_id: str,
        name: str,
        config: Mapping[str, Any],
        backends: list[Backend],
        settings: RayOptions,
    ) -> None:
        self.identity = identity
        self.trial_id = trial_id
        self.name = name
        self.run_id = identity.trial_run_id(trial_id)
        self._config = dict(config)
        self._backends = backends
        self._settings = settings
        self._every = settings.log_every_n_steps or 1
        self._session: FitSession | None = None
        self.run: RunInfo | None = None
        self._lock = threading.Lock()
        self.ended = False

    def open(self) -> None:
        """Open the run (once), the active run of this thread: the one that runs the
        trainable's code."""
        with self._lock:
            if self._session is not None or self.ended:
                return
            # The worker may be ended as soon as the trial is: its runs cannot wait for
            # the service to start after the trial's fit (see MLHOOKS_SERVICE_DEFER).
            start_writer_service_now()
            info = open_run(
                self.name,
                run_id=self.run_id,
                parent=self.identity.parent(),
                managed=True,
                backends=self._backends,
                tags=self._settings.extra_tags,
            ).info
            session = FitSession(
                FRAMEWORK,
                self.name,
                run=info,
                params=flatten(self._config),
                tags={TRIAL_ID_TAG: self.trial_id},
                settings=self._settings,
            )
            try:
                session.start()
            except BaseException:
                mlhooks.end_run(RunStatus.FAILED, run=info)
                raise
            self._session, self.run = session, info

    def report(self, result: Mapping[str, Any], step: int) -> None:
        """A result the trainable reported, at ``step`` (its ``training_iteration``)."""
        session = self._session
        if session is None or self.ended or RESULT_DUPLICATE in result or step % self._every:
            return
        metrics = reported_metrics(result)
        if metrics:
            session.epoch_end(step, metrics)

    def end(self, error: BaseException | None) -> None:
        """End the run (once): FINISHED, or FAILED (KILLED for Ctrl-C) with ``error``;
        then wait until its data is stored, as the worker may be ended next. The
        thread Tune stops a function on and the one that stops it may both end it."""
        with self._lock:  # held until stored: a second caller returns only then
            if self.ended:
                return
            self.ended = True
            session, info = self._session, self.run
            if session is None or info is None:
                return
            try:
                session.set_tags({STATUS_TAG: "ERROR" if error is not None else "TERMINATED"})
            finally:
                try:
                    session.end(error)
                finally:
                    mlhooks.end_run(RunStatus.for_exception(error), run=info)
                    mlhooks.flush(setting("MLHOOKS_FLUSH_TIMEOUT"))
