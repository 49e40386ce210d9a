"""One estimator's ``fit`` (``fit_transform``, ``fit_predict``): params, training data,
training metrics, curves and the model, in one run. Searches hand over to
:mod:`mlhooks_sklearn.searches`."""

from __future__ import annotations

from typing import Any

from mlhooks.plugin import Call, FitHandler, FitSession

from . import data, nesting, partial, plots, searches, sessions, steps, tracking
from .options import options_of
from .sessions import FRAMEWORK, log_training_data
from .training import log_training_metrics


class EstimatorFit(FitHandler):
    """Tracks each outermost fit of a scikit-learn estimator as one run."""

    framework = FRAMEWORK

    def track(self, call: Call) -> bool:
        return not nesting.part_of_another_fit()

    def new_session(self, call: Call) -> FitSession:
        partial.end_loop(call.instance)  # a full fit starts afresh
        return sessions.new_session(call.instance)

    def started(self, session: FitSession, call: Call) -> None:
        log_training_data(session, data.features(call), data.targets(call))
        nesting.enter()  # last: nothing to undo if the above raises

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        report_fit(session, call.instance, data.features(call), data.targets(call))

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        nesting.leave()
        if error is None:
            tracking.remember_model(call.instance, session)


def report_fit(session: FitSession, model: Any, X: Any, y: Any) -> None:
    if searches.is_search(model):
        searches.report(session, model, X, y)
        return
    outcome = log_training_metrics(session, model, X, y)
    steps.log_curves(session, model)
    session.log_model(model, flavor="sklearn", sample_input=data.sample_rows(X))
    if outcome is not None and options_of(session).log_plots:
        plots.submit(session, y, *outcome)
