"""One estimator's ``fit`` (``fit_transform``, ``fit_predict``): params, training data,
training metrics, curves and the model, in one run. Searches hand over to
:mod:`mlhooks_sklearn.searches`."""

from __future__ import annotations

from typing import Any

from mlhooks.plugin import Call, CallHandler, FitSession

from . import data, nesting, partial, plots, searches, steps, tracking
from .options import options_of
from .sessions import log_training_data, start_session
from .training import log_training_metrics


class EstimatorFit(CallHandler):
    """Tracks each outermost fit of a scikit-learn estimator as one run."""

    def before(self, call: Call) -> None:
        if nesting.part_of_another_fit():
            return
        model = call.instance
        partial.end_loop(model)  # a full fit starts afresh
        session = call.state["session"] = start_session(model)
        if not session.active:
            return
        nesting.enter()
        try:
            log_training_data(session, data.features(call), data.targets(call))
        except BaseException:
            nesting.leave()
            session.end()
            raise

    def after(self, call: Call, result: Any) -> None:
        session: FitSession | None = call.state.get("session")
        if session is None or not session.active:
            return
        try:
            report_fit(session, call.instance, data.features(call), data.targets(call))
        finally:
            nesting.leave()
            session.end()
        tracking.remember_model(call.instance, session)

    def failed(self, call: Call, error: BaseException) -> None:
        session: FitSession | None = call.state.get("session")
        if session is not None:
            if session.active:
                nesting.leave()
            session.end(error)


def report_fit(session: FitSession, model: Any, X: Any, y: Any) -> None:
    if searches.is_search(model):
        searches.report(session, model, X, y)
        return
    outcome = log_training_metrics(session, model, X, y)
    steps.log_curves(session, model)
    session.log_model(model, flavor="sklearn", sample_input=data.sample_rows(X))
    if outcome is not None and options_of(session).log_plots:
        plots.submit(session, y, *outcome)
