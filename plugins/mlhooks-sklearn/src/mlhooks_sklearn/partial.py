"""``partial_fit`` loops: one run per estimator instance, a point per call.

Each call logs the batch's training metrics (and the last point of ``loss_curve_``)
at the next step of that instance. With a run active, the loop logs there; else it
gets a run of its own, which does not become the active run and stays open across
calls until the estimator is fitted anew with ``fit``, is garbage-collected, or the
process exits. The model is captured at each call (cheap for the estimators that
learn incrementally) and stored once, when the loop's run ends.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import mlhooks
from mlhooks import RunInfo, RunStatus
from mlhooks.plugin import (
    Call,
    FitHandler,
    FitSession,
    ModelArtifact,
    at_exit,
    capture_model,
    current_run,
    open_run,
)

from . import data, nesting, steps
from .sessions import FRAMEWORK, log_training_data, params_of, tags_of
from .training import log_training_metrics


@dataclass
class Loop:
    """The partial_fit loop of one estimator instance."""

    name: str
    step: int = 0
    run: RunInfo | None = None
    """The loop's own run (None while it logs into a run the user opened)."""
    finalizer: Any = None
    model: ModelArtifact | None = None
    """The model as of the last call, stored when the run ends."""
    session: FitSession | None = None


_loops: dict[int, Loop] = {}
_pending_models: dict[str, tuple[FitSession, ModelArtifact]] = {}
"""run id -> the last model of a loop that logs into it, stored when the run ends."""
_lock = threading.RLock()


class PartialFit(FitHandler):
    """Each ``partial_fit`` call: one fit, one step of its estimator's loop."""

    framework = FRAMEWORK

    def track(self, call: Call) -> bool:
        return not nesting.part_of_another_fit()

    def new_session(self, call: Call) -> FitSession:
        """A session in the run the loop logs into: the active run, else its own."""
        model = call.instance
        with _lock:
            loop = _loops.get(id(model))
            if loop is None:
                loop = _loops[id(model)] = Loop(type(model).__name__)
                loop.finalizer = weakref.finalize(model, _end, id(model))
        call.state["loop"] = loop
        target = current_run()
        if target is None:
            if loop.run is None:
                loop.run = open_run(loop.name, managed=True, activate=False).info
            target = loop.run
        return FitSession(
            FRAMEWORK, loop.name, params=params_of(model), tags=tags_of(model), run=target
        )

    def started(self, session: FitSession, call: Call) -> None:
        if call.state["loop"].step == 0:
            log_training_data(session, data.features(call), data.targets(call))

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        model = call.instance
        loop: Loop = call.state["loop"]
        if session.fit is None or _loops.get(id(model)) is not loop:
            return  # the loop ended during the call
        step = loop.step
        loop.step += 1
        X, y = data.features(call), data.targets(call)
        _log_batch(session, model, X, y, step)
        if session.settings.log_models:
            registered = session.settings.registered_model_name
            artifact = capture_model(
                model,
                "model",
                flavor="sklearn",
                sample_input=data.sample_rows(X),
                log_input_example=session.settings.log_input_examples,
                log_signature=session.settings.log_model_signatures,
                **({"registered_model_name": registered} if registered else {}),
            )
            _pending_models[session.fit.run.run_id] = (session, artifact)


def _log_batch(session: FitSession, model: Any, X: Any, y: Any, step: int) -> None:
    """The batch's training metrics, then the step's end (``on_epoch_end``), with the
    last point of the loss curve when the estimator keeps one."""
    log_training_metrics(session, model, X, y, step=step)
    loss = steps.curve(getattr(model, "loss_curve_", None))
    session.epoch_end(step, {"loss": loss[-1]} if loss else {}, step)


def end_loop(model: Any) -> None:
    """End the partial_fit loop of ``model`` (it is being fitted anew)."""
    loop = _loops.get(id(model))
    if loop is not None:
        loop.finalizer.detach()
        _end(id(model))


def _end(key: int) -> None:
    with _lock:
        loop = _loops.pop(key, None)
    if loop is not None and loop.run is not None:
        mlhooks.end_run(RunStatus.FINISHED, run=loop.run)


@mlhooks.hookimpl
def on_run_end(run: RunInfo) -> None:
    """Store the last model of the loops that logged into ``run``."""
    pending = _pending_models.pop(run.run_id, None)
    if pending is not None:
        session, artifact = pending
        session.model_saved(artifact)


def _end_all() -> None:
    for key in list(_loops):
        _end(key)


at_exit(_end_all)  # before mlhooks ends open runs, which would say KILLED
