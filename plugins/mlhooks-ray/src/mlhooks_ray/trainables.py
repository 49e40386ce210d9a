"""The trainable a tracked sweep runs: the user's, with the trial's tracking around it.

Tune turns every trainable into a class (a function through ``wrap_function``) that
each trial's worker process instantiates. :func:`tracked_trainable` returns a subclass
of that class, of the same name, with :class:`TrackedTrial` first in its bases and the
sweep's :class:`~.identity.SweepIdentity` as a class attribute: Ray ships it to the
workers with the class, so a trial learns about its sweep from the trainable it runs,
never from the driver's memory or folders.

Around the user's code, in the worker:

* ``setup``: autolog as the driver does (:func:`~.trials.prepare_worker`); a class
  trainable's run opens here, on the thread that runs its ``setup``, ``step`` and
  ``cleanup``;
* ``_trainable_func`` (a function trainable, on the thread Tune runs it on): the run
  opens there, so that it is that thread's active run;
* ``step``: each result the trainable reports, at its ``training_iteration``;
* the last result of a function that returned (Ray marks it ``RESULT_DUPLICATE``,
  after the result the function returned, if any), or a class's ``step`` that
  reports ``done``: the run ends FINISHED and its data is stored before that result
  reaches Tune. Tune gives a trial that it stops at the sweep's end about 10 seconds,
  then kills its worker: a run ended only then could be killed before it is stored,
  and the sweep would return first;
* ``train`` (and the function's thread): an exception ends the run FAILED, then goes on
  unchanged (but the ``exit(0)`` that stops a function early: that run is FINISHED);
* ``stop``, and ``reset`` when Tune reuses the worker for another trial: the run ends
  FINISHED (a trial Tune stopped early) and its data is stored.

Each of the user's methods runs exactly once, with its arguments, and what it raises
goes on unchanged; a failure of ours is one warning (raised under
``MLHOOKS_STRICT=1``), and the trial goes on untracked where needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ray.tune.result import DONE, RESULT_DUPLICATE

from mlhooks.plugin import report_internal_error, settings_for

from .identity import SweepIdentity
from .options import RayOptions
from .trials import FRAMEWORK, TrialRun, prepare_worker

if TYPE_CHECKING:
    from ray.tune import Trainable as _Trainable
else:
    _Trainable = object

SITE = "ray trial tracking"
"""Where our failures in trials are reported: one warning per worker and kind."""
T = TypeVar("T")


def _ours(work: Callable[[], T], *, reraise: bool = True) -> T | None:
    """``work()``, ours: a failure is reported (raised in strict mode when ``reraise``)."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - never break the trial
        report_internal_error(SITE, error, reraise=reraise)
        return None


class TrackedTrial(_Trainable):
    """Mixed in before a trainable class: the trial's run around the user's code."""

    _mlhooks_sweep: ClassVar[SweepIdentity]
    _mlhooks_function: ClassVar[bool] = False
    """Whether the user's code runs in a function on a thread of Tune's."""
    _mlhooks_trial: TrialRun | None = None

    def _mlhooks_begin(self) -> TrialRun:
        identity = type(self)._mlhooks_sweep
        backends = prepare_worker(identity)
        trial = TrialRun(
            identity,
            self.trial_id,
            self.trial_name,
            self.config,
            backends,
            settings_for(FRAMEWORK, RayOptions),
        )
        if not self._mlhooks_function:
            trial.open()  # active on this thread, which runs the class's methods
        return trial

    def _mlhooks_end(self, error: BaseException | None, *, reraise: bool) -> None:
        trial, self._mlhooks_trial = self._mlhooks_trial, None
        if trial is not None:
            _ours(lambda: trial.end(error), reraise=reraise)

    def setup(self, config: dict[str, Any]) -> None:
        self._mlhooks_trial = _ours(self._mlhooks_begin)
        try:
            super().setup(config)
        except BaseException as error:
            self._mlhooks_end(error, reraise=False)
            raise

    def _trainable_func(self, config: dict[str, Any]) -> Any:
        trial = self._mlhooks_trial
        if trial is not None:
            _ours(trial.open)
        try:
            return super()._trainable_func(config)  # type: ignore[misc]
        except BaseException as error:
            # Tune stops a function early (a scheduler, a stop criterion) with exit(0).
            stopped = isinstance(error, SystemExit) and error.code in (0, None)
            self._mlhooks_end(None if stopped else error, reraise=False)
            raise

    def step(self) -> dict[str, Any]:
        result = super().step()
        trial = self._mlhooks_trial
        if trial is not None and isinstance(result, dict):
            _ours(lambda: trial.report(result, self.iteration + 1))
            if result.get(DONE) or RESULT_DUPLICATE in result:
                self._mlhooks_end(None, reraise=True)  # before Tune hears it is done
        return result

    def train(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = super().train()  # type: ignore[no-untyped-call]
            return result
        except BaseException as error:
            self._mlhooks_end(error, reraise=False)
            raise

    def stop(self) -> None:
        try:
            super().stop()  # type: ignore[no-untyped-call]
        except BaseException as error:
            self._mlhooks_end(error, reraise=False)
            raise
        self._mlhooks_end(None, reraise=True)

    def reset(self, new_config: dict[str, Any], storage: Any = None) -> bool:
        self._mlhooks_end(None, reraise=True)  # the previous trial ran to its end
        done: bool = super().reset(new_config, storage)  # type: ignore[no-untyped-call]
        if done:
            self._mlhooks_trial = _ours(self._mlhooks_begin)
        return done


def tracked_trainable(trainable: Any, identity: SweepIdentity) -> type[Any] | None:
    """The class Tune makes of ``trainable`` (a function or a ``Trainable`` class),
    with the trials' tracking; None for what is not ours to wrap (a trainable
    registered by name, ``Experiment`` objects)."""
    from ray.tune.experiment import Experiment
    from ray.tune.trainable import FunctionTrainable, Trainable, wrap_function

    if isinstance(trainable, (str, Experiment, list)):
        return None
    name = Experiment.get_trainable_name(trainable)
    if isinstance(trainable, type):
        base = trainable
    elif callable(trainable):
        base = wrap_function(trainable, name=name)  # what Tune's registration does
    else:
        return None
    if not issubclass(base, Trainable):
        return None
    attributes = {
        "_name": name,
        "_mlhooks_sweep": identity,
        "_mlhooks_function": issubclass(base, FunctionTrainable),
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
    }
    return type(base.__name__, (TrackedTrial, base), attributes)
