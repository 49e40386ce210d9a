"""What is recorded around ``Study.optimize`` and ``Trial.report``.

``Study.optimize`` is one fit: the study's run (see :mod:`.studies`), with the sampler,
the pruner and the direction(s) as params. Before the original runs, the objective is
replaced by a wrapper and a callback of ours is put first among the callbacks, in new
arguments (the caller's are not changed): see :mod:`.tracker`.

``Trial.report`` logs each intermediate value as the trial reports it, also from inside
a tracked fit (a pruning callback of XGBoost or LightGBM), where it is a nested call.
"""

from __future__ import annotations

import inspect
from typing import Any

from optuna.study import Study

from mlhooks.plugin import Call, CallHandler, FitHandler, FitSession, current_run, settings_for

from . import studies
from .options import OptunaOptions
from .tracker import StudyTracker, running_trial
from .trials import FRAMEWORK

_OPTIMIZE = inspect.signature(Study.optimize)
_OPTIMIZE = _OPTIMIZE.replace(parameters=list(_OPTIMIZE.parameters.values())[1:])
"""Optuna's ``optimize`` without ``self``: the arguments by name, whoever wraps it."""


def study_params(study: Any) -> dict[str, Any]:
    """The sampler, the pruner and the direction(s) of ``study``."""
    directions = [direction.name.lower() for direction in study.directions]
    params: dict[str, Any] = {
        "sampler": type(study.sampler).__name__,
        "pruner": type(study.pruner).__name__,
    }
    if len(directions) == 1:
        params["direction"] = directions[0]
    else:
        params["directions"] = ",".join(directions)
    return params


class OptimizeFit(FitHandler):
    """``Study.optimize``: the study's run, a child run per trial."""

    framework = FRAMEWORK

    def new_session(self, call: Call) -> FitSession:
        study = call.instance
        options = settings_for(FRAMEWORK, OptunaOptions)
        params = study_params(study)
        tags = {"optuna.study.name": study.study_name}
        if options.share_study_run and current_run() is None:
            shared = studies.acquire(study, options.extra_tags)
            call.state["shared"] = shared
            return FitSession(
                FRAMEWORK,
                study.study_name,
                params=params if shared.created else {},
                tags=tags,
                settings=options,
                run=shared.info,
            )
        return FitSession(FRAMEWORK, study.study_name, params=params, tags=tags, settings=options)

    def before(self, call: Call) -> None:
        try:
            super().before(call)
        except BaseException:
            _release(call, None)  # the original runs untracked
            raise

    def started(self, session: FitSession, call: Call) -> None:
        tracker = StudyTracker(session, call.instance, OptunaOptions.of(session.settings))
        bound = _OPTIMIZE.bind(*call.args, **call.kwargs)
        arguments = bound.arguments
        arguments["func"] = tracker.objective(arguments["func"])
        arguments["callbacks"] = [tracker.trial_finished, *(arguments.get("callbacks") or ())]
        call.args, call.kwargs = bound.args, bound.kwargs
        call.state["tracker"] = tracker

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        call.state.pop("tracker").close(None)

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        try:
            tracker: StudyTracker | None = call.state.pop("tracker", None)
            if tracker is not None:
                tracker.close(error)
        finally:
            _release(call, error)


def _release(call: Call, error: BaseException | None) -> None:
    shared: studies.StudyRun | None = call.state.pop("shared", None)
    if shared is not None:
        studies.release(shared, error)


class ReportHandler(CallHandler):
    """``Trial.report``: the intermediate value, into the trial's run."""

    def after(self, call: Call, result: Any) -> None:
        _log_report(call)

    def nested(self, call: Call) -> None:
        _log_report(call)  # inside a fit (a pruning callback): checked as Optuna does


def _log_report(call: Call) -> None:
    trial_run = running_trial(call.instance)
    if trial_run is None or not trial_run.log_intermediate:
        return
    given: Any = call.args[0] if call.args else call.kwargs.get("value")
    given_step: Any = call.args[1] if len(call.args) > 1 else call.kwargs.get("step")
    try:
        value, step = float(given), int(given_step)
    except (TypeError, ValueError):
        return  # Optuna refuses it
    if step >= 0:
        trial_run.report(value, step)
