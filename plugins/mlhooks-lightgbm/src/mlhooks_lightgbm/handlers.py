"""What is recorded around ``lightgbm.train``, ``lightgbm.cv`` and the scikit-learn
API's ``fit``.

The scikit-learn API's ``fit`` builds its Datasets and calls ``train`` (under its own
name, ``lightgbm.sklearn.train``, patched too), which the re-entrancy guard leaves
untracked: the outer fit is the one run. It leaves its per-iteration callback in a
thread-local slot that :meth:`TrainFit.nested` (which runs for nested calls) hands to
that inner ``train`` call in a new callbacks list, so that neither the user's
estimator nor their arguments are changed. Inside a scikit-learn search, whose
``fit`` mlhooks-sklearn tracks, the candidates' fits are nested calls too (or run on
joblib's worker threads or processes, untracked): the search is the run and its
candidates are its child runs.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lightgbm import Booster
from lightgbm.engine import cv as lightgbm_cv
from lightgbm.engine import train as lightgbm_train

from mlhooks.plugin import Call, FitHandler, FitSession, helper_thread_of_a_fit

from .arguments import arguments, bind, call_params, param_value, params_of, replace_argument
from .callback import IterationLogger, metric_key, training_callbacks
from .datasets import FRAMEWORK, fingerprint, log_datasets, sample_rows
from .importance import log_importance

TRAIN_ARGS = ("num_boost_round", "feval", "init_model", "keep_training_booster")
CV_ARGS = (
    "num_boost_round",
    "nfold",
    "stratified",
    "shuffle",
    "metrics",
    "feval",
    "init_model",
    "fpreproc",
    "seed",
    "eval_train_metric",
    "return_cvbooster",
)
FIT_ARGS = ("eval_metric", "eval_at", "init_model")
"""Arguments of the estimators' ``fit`` logged as params beside ``get_params()``."""

_slot = threading.local()
"""``.pending``: the scikit-learn API fit running on this thread, until its ``train``."""


@dataclass
class Tracking:
    """One tracked fit's state, from ``started`` to ``finish``."""

    session: FitSession
    logger: IterationLogger
    sample: Any = None
    """A few rows of the training data, for the model's signature."""


def new_tracking(session: FitSession, cv: bool = False) -> Tracking:
    every = session.settings.log_every_n_steps or 1
    return Tracking(session, IterationLogger(session, every_n=every, cv=cv))


def give_callback(call: Call, bound: inspect.BoundArguments, tracking: Tracking) -> None:
    """Hand the training loop ours, first in a new list with the user's callbacks."""
    given = bound.arguments.get("callbacks")
    if given is None or isinstance(given, (list, tuple)):
        replace_argument(call, bound, "callbacks", training_callbacks(given, tracking.logger))


def bound_call(call: Call, reference: Any = None) -> bool:
    """Whether to track the call: not when it is part of a fit running on another
    thread (a search's candidate on joblib's threads, logged by the search), nor when
    its arguments do not fit the function (LightGBM then raises its own error). Its
    arguments, bound, go into ``call.state``."""
    if helper_thread_of_a_fit():
        return False
    try:
        call.state["bound"] = bind(call, reference)
    except TypeError:
        return False
    return True


# -- what every boosting fit reports ----------------------------------------------------------


def report_training(tracking: Tracking, booster: Any, model: Any = None) -> None:
    """After training: the last iteration (if skipped), early stopping, the model and
    its feature importance."""
    tracking.logger.finish()
    log_early_stopping(tracking, booster)
    tracking.session.log_model(
        booster if model is None else model,
        name="model",
        flavor="lightgbm",
        sample_input=tracking.sample,
    )
    log_importance(tracking.session, booster)


def log_early_stopping(tracking: Tracking, booster: Any) -> None:
    """With early stopping: ``best_iteration`` (LightGBM's, counted from 1),
    ``stopped_iteration`` (how many iterations ran) and each metric's value at the
    best iteration (``best.<dataset>-<metric>``), at that iteration's step."""
    best = getattr(booster, "best_iteration", 0)
    if not isinstance(best, int) or best <= 0:
        return
    values: dict[str, Any] = {
        "best_iteration": best,
        "stopped_iteration": tracking.logger.last_iteration + 1,
    }
    best_score = getattr(booster, "best_score", None)
    if isinstance(best_score, Mapping):
        for dataset, scores in best_score.items():
            for metric, value in scores.items():
                values[f"best.{dataset}-{metric_key(metric)}"] = value
    tracking.session.log_metrics(values, step=best - 1)


# -- lightgbm.train -------------------------------------------------------------------------------


class TrainFit(FitHandler):
    """``lightgbm.train``: params, one point per iteration, dataset and metric,
    datasets, early stopping, the model and its feature importance."""

    framework = FRAMEWORK

    def track(self, call: Call) -> bool:
        return bound_call(call, lightgbm_train)

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        values = arguments(call.state["bound"])
        return "lightgbm-train", {**params_of(values["params"]), **call_params(values, TRAIN_ARGS)}

    def started(self, session: FitSession, call: Call) -> None:
        bound = call.state["bound"]
        values = arguments(bound)
        train_set = values["train_set"]
        log_datasets(session, train_set, values["valid_sets"], values["valid_names"])
        tracking = new_tracking(session)
        if session.settings.log_models:
            tracking.sample = sample_rows(getattr(train_set, "data", None))
        give_callback(call, bound, tracking)
        call.state["tracking"] = tracking

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is not None and isinstance(result, Booster):
            report_training(tracking, result)

    def nested(self, call: Call) -> None:
        """Inside a scikit-learn API fit: hand the training loop that fit's callback."""
        pending: Tracking | None = getattr(_slot, "pending", None)
        if pending is None:
            return
        _slot.pending = None  # one train call per fit
        give_callback(call, bind(call, lightgbm_train), pending)


# -- lightgbm.cv ----------------------------------------------------------------------------------


class CvFit(FitHandler):
    """``lightgbm.cv``: params, the mean and standard deviation of every metric per
    iteration, the dataset, early stopping."""

    framework = FRAMEWORK

    def track(self, call: Call) -> bool:
        return bound_call(call, lightgbm_cv)

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        values = arguments(call.state["bound"])
        params = {**params_of(values["params"]), **call_params(values, CV_ARGS)}
        if values.get("folds") is not None:  # a splitter or an iterable of index pairs
            params["folds"] = type(values["folds"]).__name__
        return "lightgbm-cv", params

    def started(self, session: FitSession, call: Call) -> None:
        bound = call.state["bound"]
        log_datasets(session, arguments(bound)["train_set"])
        tracking = new_tracking(session, cv=True)
        give_callback(call, bound, tracking)
        call.state["tracking"] = tracking

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is None:
            return
        tracking.logger.finish()
        best = getattr(tracking.logger.model, "best_iteration", -1)
        if not isinstance(best, int) or best <= 0 or not isinstance(result, Mapping):
            return
        values: dict[str, Any] = {
            "best_iteration": best,
            "stopped_iteration": tracking.logger.last_iteration + 1,
        }
        for key, series in result.items():  # "valid auc-mean": one value per iteration
            dataset, _, metric = str(key).partition(" ")
            if metric and isinstance(series, Sequence) and series:
                values[f"best.{dataset}-{metric_key(metric)}"] = series[-1]
        session.log_metrics(values, step=best - 1)


# -- the scikit-learn API -------------------------------------------------------------------------


class SklearnFit(FitHandler):
    """``LGBMModel.fit`` and its subclasses': the estimator's params, its data and
    eval sets, every iteration, early stopping, the fitted estimator as the model."""

    framework = FRAMEWORK

    def track(self, call: Call) -> bool:
        return bound_call(call)

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        estimator = call.instance
        params = {
            key: param_value(value)
            for key, value in estimator.get_params(deep=False).items()
            if value is not None
        }
        params.update(call_params(arguments(call.state["bound"]), FIT_ARGS))
        return type(estimator).__name__, params

    def started(self, session: FitSession, call: Call) -> None:
        values = arguments(call.state["bound"])
        log_fit_data(session, values)
        tracking = new_tracking(session)
        if session.settings.log_models:
            tracking.sample = sample_rows(values["X"])
        call.state["tracking"] = tracking
        _slot.pending = tracking

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is not None:
            report_training(tracking, call.instance.booster_, model=call.instance)

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        _slot.pending = None  # unused when the fit never called train


def log_fit_data(session: FitSession, values: Mapping[str, Any]) -> None:
    """``X`` as ``train``, each eval set that is not the training data as LightGBM
    names its metrics (``eval_names[i]``, else ``valid_<i>``), context ``eval``."""
    if not session.settings.log_datasets:
        return
    X, y = values["X"], values["y"]
    info = fingerprint(X)
    if info is not None:
        session.log_dataset(replace(info, name="train", context="train"))
    names = list(values.get("eval_names") or ())
    for index, (X_eval, y_eval) in enumerate(eval_pairs(values)):
        if X_eval is X and y_eval is y:  # LightGBM evaluates the training Dataset
            continue
        info = fingerprint(X_eval)
        if info is not None:
            name = names[index] if index < len(names) else f"valid_{index}"
            session.log_dataset(replace(info, name=name, context="eval"))


def eval_pairs(values: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """The fit's eval sets as (X, y) pairs: ``eval_set``, or ``eval_X`` and ``eval_y``
    (LightGBM 4.7), each one pair or a tuple of them."""
    pairs = values.get("eval_set")
    if pairs is None and values.get("eval_X") is not None:
        xs, ys = values["eval_X"], values.get("eval_y")
        xs = xs if isinstance(xs, tuple) else (xs,)
        ys = ys if isinstance(ys, tuple) else (ys,) * len(xs)
        pairs = list(zip(xs, ys, strict=False))
    if isinstance(pairs, tuple):
        pairs = [pairs]
    return [
        tuple(pair) for pair in pairs or () if isinstance(pair, (list, tuple)) and len(pair) == 2
    ]
