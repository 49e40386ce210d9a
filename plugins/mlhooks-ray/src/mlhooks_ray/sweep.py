"""The driver's side of a sweep: ``tune.run`` (which ``Tuner.fit`` calls) as one fit.

The sweep's run opens before the original runs, with the sweep's settings as params
(``metric``, ``mode``, ``num_samples``, ``search_alg``, ``scheduler``); inside a run
of the user's, the sweep logs into it. Then, in new arguments (the caller's are not
changed), the trainable becomes :func:`~.trainables.tracked_trainable` of it (each
trial's run opens in its worker) and a :class:`~.callback.SweepCallback` of ours is put
first among the callbacks. What was logged so far is stored before the trials start,
so that each worker finds the sweep's run to be the parent of its trial's.

While the sweep runs, the callback tells :class:`Sweep` what becomes of each trial: a
completed trial that improves on the best so far is logged as ``best_value`` and tagged
on the sweep's run; a trial whose worker died (it could not end its run) has its run
ended FAILED from here.
"""

from __future__ import annotations

import inspect
import numbers
import os
import threading
from collections.abc import Mapping
from typing import Any

import mlhooks
from mlhooks.plugin import (
    Call,
    FitHandler,
    FitSession,
    RunInfo,
    RunStatus,
    current_run,
    notice_once,
    open_run,
    setting,
)

from .identity import SweepIdentity, identity_of
from .options import RayOptions
from .trainables import tracked_trainable
from .trials import FRAMEWORK, STATUS_TAG, TRIAL_ID_TAG, flatten

EXPERIMENT_TAG = "ray.tune.experiment"
BEST_VALUE = "best_value"
BEST_TAGS = ("ray.tune.best_trial.id", "ray.tune.best_trial.name", "ray.tune.best_trial.run_id")


def sweep_name(arguments: Mapping[str, Any]) -> str:
    """The experiment's name, else its trainable's, as Tune names it."""
    from ray.tune.experiment import Experiment

    name = arguments.get("name")
    if isinstance(name, str) and name:
        return name
    trainable = arguments["run_or_experiment"]
    if isinstance(trainable, Experiment):
        return str(trainable.storage.experiment_dir_name)
    if isinstance(trainable, list):
        return "tune"
    return str(Experiment.get_trainable_name(trainable))


def sweep_params(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """What the sweep searches with and for."""
    search, scheduler = arguments.get("search_alg"), arguments.get("scheduler")
    params: dict[str, Any] = {
        "num_samples": arguments.get("num_samples", 1),
        "search_alg": _named(search, "BasicVariantGenerator"),
        "scheduler": _named(scheduler, "FIFOScheduler"),
    }
    for key in ("metric", "mode"):
        if arguments.get(key) is not None:
            params[key] = arguments[key]
    return params


def _named(component: Any, default: str) -> str:
    if component is None:
        return default
    return component if isinstance(component, str) else type(component).__name__


def worker_died(trial: Any) -> bool:
    """Whether ``trial`` failed because its worker process died (rather than raised):
    the error Tune just wrote down for it, in the driver's folder of the trial."""
    import ray.cloudpickle
    from ray.exceptions import RayActorError

    path = trial.pickled_error_file
    if not path or not os.path.isfile(path):
        return False
    with open(path, "rb") as pickled:
        error = ray.cloudpickle.load(pickled)
    return isinstance(error, RayActorError)


class SweepFit(FitHandler):
    """``tune.run``: the sweep's run, and each trial's run in its worker."""

    framework = FRAMEWORK

    def __init__(self, run: Any) -> None:
        self._signature = inspect.signature(run)

    def _arguments(self, call: Call) -> inspect.BoundArguments:
        return self._signature.bind(*call.args, **call.kwargs)

    def track(self, call: Call) -> bool:
        """Not a call Tune will refuse (it raises its own error), nor one through Ray
        Client (it runs the sweep in another process)."""
        import ray

        try:
            arguments = self._arguments(call).arguments
        except TypeError:
            return False
        connected = ray.util.client.ray.is_connected()  # type: ignore[no-untyped-call]
        if arguments.get("_remote") or connected:
            notice_once(
                "ray-client",
                "mlhooks: a Ray Tune sweep run through Ray Client runs in another process "
                "and is not tracked; run the driver on the cluster to track it",
            )
            return False
        return True

    def new_session(self, call: Call) -> FitSession:
        arguments = self._arguments(call).arguments
        name = sweep_name(arguments)
        params = sweep_params(arguments)
        tags = {EXPERIMENT_TAG: name}
        outer = current_run()
        if outer is not None and outer.backend_ids:
            # A run opened outside mlhooks (mlflow.start_run()): its children are found
            # by mlhooks' run id, which only runs of mlhooks have: one under it.
            return FitSession(FRAMEWORK, name, params=params, tags=tags, parent=outer)
        return FitSession(FRAMEWORK, name, params=params, tags=tags)

    def started(self, session: FitSession, call: Call) -> None:
        assert session.fit is not None
        options = RayOptions.of(session.settings)
        bound = self._arguments(call)
        arguments = bound.arguments
        identity = identity_of(session.fit.run)
        trainable = None
        if options.track_trials:
            trainable = tracked_trainable(arguments["run_or_experiment"], identity)
            if trainable is None:
                notice_once(
                    "ray-trainable-by-name",
                    "mlhooks: the trials of a Ray Tune trainable given by its registered "
                    "name (or as an Experiment) are not tracked, only the sweep: pass the "
                    "function or the Trainable class itself",
                )
        metric, mode = arguments.get("metric"), arguments.get("mode")
        sweep = Sweep(session, identity, metric, mode, track_trials=trainable is not None)
        if trainable is not None:
            arguments["run_or_experiment"] = trainable
        arguments["callbacks"] = [sweep.callback(), *(arguments.get("callbacks") or ())]
        call.args, call.kwargs = bound.args, bound.kwargs
        call.state["sweep"] = sweep
        if trainable is not None:  # each trial's worker looks for the sweep's run
            timeout = setting("MLHOOKS_FLUSH_TIMEOUT")
            if not mlhooks.flush(timeout):
                notice_once(
                    f"ray-sweep-not-stored:{identity.run_id}",
                    f"mlhooks: the run of sweep {identity.name!r} was not stored within "
                    f"{timeout:g}s; its trials' runs may not find it as their parent",
                )

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        call.state.pop("sweep").close(None)

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        sweep: Sweep | None = call.state.pop("sweep", None)
        if sweep is not None:
            sweep.close(error)


class Sweep:
    """One tracked sweep in the driver: what became of its trials, and its best."""

    def __init__(
        self,
        session: FitSession,
        identity: SweepIdentity,
        metric: str | None,
        mode: str | None,
        *,
        track_trials: bool,
    ) -> None:
        assert session.fit is not None
        self.session = session
        self.run: RunInfo = session.fit.run
        self.identity = identity
        self.metric = metric
        self.maximize = mode == "max"
        self.ranked = metric is not None and mode in ("min", "max")
        self.track_trials = track_trials
        self._running: dict[str, Any] = {}
        """Trials started and not yet finished, by trial id."""
        self._best: float | None = None
        self._best_step = -1
        self._lock = threading.Lock()

    def callback(self) -> Any:
        from .callback import SweepCallback

        return SweepCallback(self)

    def started(self, trial: Any) -> None:
        with self._lock:
            self._running[trial.trial_id] = trial

    def completed(self, trials: list[Any], trial: Any) -> None:
        """A trial ran to its end: the best so far when its last value is."""
        with self._lock:
            self._running.pop(trial.trial_id, None)
            if not self.ranked:
                return
            value = flatten(trial.last_result or {}).get(self.metric or "")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return
            value = float(value)
            known = self._best
            if known is not None and not (value > known if self.maximize else value < known):
                return
            self._best = value
            number = trials.index(trial) if trial in trials else self._best_step + 1
            self._best_step = max(self._best_step, number)  # steps never go back
            self.session.log_metrics({BEST_VALUE: value}, step=self._best_step)
            run_id = self.identity.trial_run_id(trial.trial_id) if self.track_trials else ""
            tags = dict(zip(BEST_TAGS, (trial.trial_id, str(trial), run_id), strict=True))
            self.session.set_tags({k: v for k, v in tags.items() if v})

    def errored(self, trial: Any) -> None:
        """A trial failed: its worker ended its run, unless the worker died."""
        with self._lock:
            self._running.pop(trial.trial_id, None)
        if self.track_trials and worker_died(trial):
            self.end_trial_run(trial, RunStatus.FAILED)

    def end_trial_run(self, trial: Any, status: RunStatus) -> None:
        """End the run of ``trial`` from the driver, as its worker could not."""
        name = str(trial)
        info = open_run(
            name,
            run_id=self.identity.trial_run_id(trial.trial_id),
            parent=self.run,
            managed=True,
            activate=False,
            log_context=False,
            tags=self.session.settings.extra_tags,
        ).info
        session = FitSession(
            FRAMEWORK,
            name,
            run=info,
            params=flatten(trial.config or {}),
            tags={TRIAL_ID_TAG: trial.trial_id, STATUS_TAG: trial.status},
            settings=self.session.settings,
        )
        try:
            session.start()
            session.end()
        finally:
            mlhooks.end_run(status, run=info)

    def close(self, error: BaseException | None) -> None:
        """The sweep is over: the runs of trials it left running end as it did."""
        with self._lock:
            left, self._running = list(self._running.values()), {}
        if error is not None and self.track_trials:
            for trial in left:
                self.end_trial_run(trial, RunStatus.for_exception(error))
