"""What is recorded around ``xgboost.train``, ``xgboost.cv``, the scikit-learn API's
``fit`` and the construction of a ``DMatrix``.

The scikit-learn API's ``fit`` builds its matrices and calls ``train``, which the
re-entrancy guard leaves untracked: the outer fit is the one run. It leaves its
per-round callback in a thread-local slot that :meth:`TrainFit.nested` (which runs
for nested calls) hands to that inner ``train`` call in a new callbacks list, so
neither the user's estimator nor their arguments are changed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from xgboost import Booster, DMatrix
from xgboost.training import cv as xgboost_cv
from xgboost.training import train as xgboost_train

import mlhooks
from mlhooks import DatasetInfo
from mlhooks.plugin import (
    Call,
    CallHandler,
    FitHandler,
    FitSession,
    ModelArtifact,
    settings_for,
)

from .callback import RoundLogger, checkpoint_artifact, training_callbacks
from .importance import ModelBytes, write_importance
from .options import options_of

FRAMEWORK = "xgboost"
TRAIN_ARGS = (
    "num_boost_round",
    "early_stopping_rounds",
    "maximize",
    "verbose_eval",
    "obj",
    "custom_metric",
    "xgb_model",
)
CV_ARGS = (
    "num_boost_round",
    "nfold",
    "stratified",
    "folds",
    "metrics",
    "obj",
    "maximize",
    "early_stopping_rounds",
    "fpreproc",
    "seed",
    "shuffle",
    "custom_metric",
)

INNER_TRAIN_ARGS = ("num_boost_round", "early_stopping_rounds")

_sources: weakref.WeakKeyDictionary[DMatrix, DatasetInfo] = weakref.WeakKeyDictionary()
"""The fingerprint of the data each live ``DMatrix`` was built from."""
_slot = threading.local()
"""``.pending``: the scikit-learn API fit running on this thread, until its ``train``."""


# -- parameters ---------------------------------------------------------------------------


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def bound_arguments(call: Call, reference: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The call's arguments by name, defaults included, as ``reference`` (XGBoost's
    function: what is patched may be someone else's wrapper) or the callee names them.

    XGBoost still takes its keyword-only arguments positionally, in order, with a
    ``FutureWarning`` (``xgboost.train(params, dtrain, 10, evals)``): so are they here."""
    signature = _signature(reference or call.wrapped)
    args, kwargs = call.args, dict(call.kwargs)
    kinds = [parameter.kind for parameter in signature.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        positional = sum(kind in _POSITIONAL for kind in kinds)
        keyword_only = [
            name
            for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        for name, value in zip(keyword_only, args[positional:], strict=False):
            kwargs.setdefault(name, value)
        args = args[:positional]
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def param_value(value: Any) -> Any:
    """What a param shows: the name of a function, the type of an object we do not
    spell out (a Booster, a splitter), the value otherwise."""
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__name__
    if isinstance(value, (Booster, DMatrix)) or type(value).__module__.startswith("sklearn"):
        return type(value).__name__
    return value


def booster_params(params: Any) -> dict[str, Any]:
    """XGBoost params as the user passed them: a dict, or a list of pairs in which a
    key may repeat (several ``eval_metric``), merged into a list."""
    items = params.items() if isinstance(params, Mapping) else (params or ())
    merged: dict[str, Any] = {}
    for key, value in items:
        if key in merged:
            before = merged[key] if isinstance(merged[key], list) else [merged[key]]
            merged[key] = [*before, value]
        else:
            merged[key] = value
    return {key: param_value(value) for key, value in merged.items()}


def call_params(arguments: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The effective training arguments among ``names`` (None means not used)."""
    return {name: param_value(arguments[name]) for name in names if arguments.get(name) is not None}


# -- what every boosting fit reports ----------------------------------------------------------


@dataclass
class Tracking:
    """One tracked fit's state, from ``started`` to ``finish``."""

    session: FitSession
    logger: RoundLogger
    train_arguments: dict[str, Any] = field(default_factory=dict)


def new_tracking(session: FitSession, cv: bool = False) -> Tracking:
    every = session.settings.log_every_n_steps or 1
    return Tracking(session, RoundLogger(session, every_n=every, cv=cv))


def callbacks_for(tracking: Tracking, given: Any) -> list[Any]:
    session = tracking.session

    def report(path: str, epoch: int) -> None:
        session.model_saved(checkpoint_artifact(path, epoch))

    return training_callbacks(given, tracking.logger, report)


def log_matrices(session: FitSession, dtrain: Any, evals: Any) -> None:
    """Fingerprints of the data behind the training and eval matrices."""
    if not session.settings.log_datasets:
        return
    evals = list(evals or ())
    names = {id(matrix): name for matrix, name in evals}
    train = _sources.get(dtrain) if isinstance(dtrain, DMatrix) else None
    if train is not None:
        session.log_dataset(replace(train, name=names.get(id(dtrain), "train"), context="train"))
    for matrix, name in evals:
        info = _sources.get(matrix) if isinstance(matrix, DMatrix) else None
        if info is not None and matrix is not dtrain:
            session.log_dataset(replace(info, name=name, context="eval"))


def log_early_stopping(tracking: Tracking, booster: Booster) -> None:
    """Best iteration and score, stopped iteration, and each metric's best-round value
    (``best.<eval>-<metric>``), all at step = the best iteration."""
    try:
        best = int(booster.best_iteration)
    except AttributeError:  # no early stopping in this fit
        return
    last = tracking.logger.last_round
    values: dict[str, Any] = {
        "best_iteration": best,
        "stopped_iteration": last if last >= 0 else booster.num_boosted_rounds() - 1,
    }
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        values["best_score"] = float(booster.best_score)
    for key, value in tracking.logger.metrics_at(best).items():
        values[f"best.{key}"] = value
    tracking.session.log_metrics(values, step=best)


def log_importance(session: FitSession, booster: Booster, model: ModelArtifact | None) -> None:
    """Importance JSON and charts, built in the background from the model's bytes:
    those of ``model`` (the logged model, pickled) when there are, so that the booster
    is serialized once on the training thread; else the booster's own, taken now."""
    types = options_of(session).importance_types
    if not types or booster.num_boosted_rounds() == 0:
        return
    if model is not None and model.payload is not None and model.format == "pickle":
        saved = ModelBytes(model.payload, pickled=True)
    else:
        saved = ModelBytes(bytes(booster.save_raw("ubj")), pickled=False)
    session.in_background(
        functools.partial(write_importance, saved, types), artifact_path="feature_importance"
    )


# -- xgboost.train ------------------------------------------------------------------------------


class TrainFit(FitHandler):
    """``xgboost.train``: params, one point per round and metric, datasets, model."""

    framework = FRAMEWORK

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        arguments = bound_arguments(call, xgboost_train)
        params = {**booster_params(arguments["params"]), **call_params(arguments, TRAIN_ARGS)}
        return "xgboost-train", params

    def started(self, session: FitSession, call: Call) -> None:
        arguments = bound_arguments(call, xgboost_train)
        log_matrices(session, arguments["dtrain"], arguments["evals"])
        tracking = new_tracking(session)
        call.state["tracking"] = tracking
        call.kwargs = {**call.kwargs, "callbacks": callbacks_for(tracking, arguments["callbacks"])}

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is None or not isinstance(result, Booster):
            return
        log_early_stopping(tracking, result)
        model = session.log_model(result, name="model", flavor="xgboost")
        log_importance(session, result, model)

    def nested(self, call: Call) -> None:
        """Inside a scikit-learn API fit: add its callback, note the train arguments."""
        pending: Tracking | None = getattr(_slot, "pending", None)
        if pending is None:
            return
        _slot.pending = None  # one train call per fit
        arguments = bound_arguments(call, xgboost_train)
        pending.train_arguments = call_params(arguments, INNER_TRAIN_ARGS)
        pending.session.log_params(pending.train_arguments)
        call.kwargs = {**call.kwargs, "callbacks": callbacks_for(pending, arguments["callbacks"])}


# -- xgboost.cv -----------------------------------------------------------------------------------


class CvFit(FitHandler):
    """``xgboost.cv``: params, the mean and std of every metric per round."""

    framework = FRAMEWORK

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        arguments = bound_arguments(call, xgboost_cv)
        params = {**booster_params(arguments["params"]), **call_params(arguments, CV_ARGS)}
        return "xgboost-cv", params

    def started(self, session: FitSession, call: Call) -> None:
        arguments = bound_arguments(call, xgboost_cv)
        log_matrices(session, arguments["dtrain"], ())
        tracking = new_tracking(session, cv=True)
        call.state["tracking"] = tracking
        callbacks = training_callbacks(arguments["callbacks"], tracking.logger, None)
        call.kwargs = {**call.kwargs, "callbacks": callbacks}

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is None or tracking.logger.best_iteration is None:
            return
        best = tracking.logger.best_iteration
        values = {f"best.{k}": v for k, v in tracking.logger.metrics_at(best).items()}
        session.log_metrics(
            {"best_iteration": best, "stopped_iteration": tracking.logger.last_round, **values},
            step=best,
        )


# -- the scikit-learn API ----------------------------------------------------------------------


class SklearnFit(FitHandler):
    """``XGBModel.fit`` and subclasses: the estimator's params, its eval sets, the
    fitted estimator as the model."""

    framework = FRAMEWORK

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        estimator = call.instance
        params = {
            key: param_value(value)
            for key, value in estimator.get_params(deep=False).items()
            if value is not None and key != "callbacks"
        }
        return type(estimator).__name__, params

    def started(self, session: FitSession, call: Call) -> None:
        arguments = bound_arguments(call)
        if session.settings.log_datasets:
            session.log_dataset(arguments["X"], name="train", context="train")
            for index, pair in enumerate(arguments.get("eval_set") or ()):
                session.log_dataset(pair[0], name=f"validation_{index}", context="eval")
        tracking = new_tracking(session)
        call.state["tracking"] = tracking
        call.state["sample"] = _head(arguments["X"])
        _slot.pending = tracking

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        tracking: Tracking | None = call.state.get("tracking")
        if tracking is None:
            return
        booster = call.instance.get_booster()
        log_early_stopping(tracking, booster)
        model = session.log_model(
            _without_callbacks(call.instance),
            name="model",
            flavor="xgboost",
            sample_input=call.state["sample"],
        )
        log_importance(session, booster, model)

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        _slot.pending = None  # unused when the fit never called train


def _without_callbacks(estimator: Any) -> Any:
    """The estimator to log: a shallow copy without its callbacks (training-time
    objects, often local classes that cannot be pickled; the saved model has none)."""
    if not getattr(estimator, "callbacks", None):
        return estimator
    model = copy.copy(estimator)
    model.callbacks = None
    return model


def _head(X: Any, rows: int = 5) -> Any:
    """A copy of the first rows of ``X`` (a sample input for the model's signature)."""
    try:
        head = X.iloc[:rows] if hasattr(X, "iloc") else X[:rows]
        return head.copy()
    except Exception:  # noqa: BLE001 - an input we cannot slice: no sample
        return None


# -- DMatrix --------------------------------------------------------------------------------------


class DMatrixSource(CallHandler):
    """Fingerprints the data a ``DMatrix``/``QuantileDMatrix`` is built from, so that a
    later ``train`` can log it (the matrix keeps no reference to it)."""

    def after(self, call: Call, result: Any) -> None:
        if not settings_for(FRAMEWORK).log_datasets:
            return
        data = call.args[0] if call.args else call.kwargs.get("data")
        try:
            info = mlhooks.fingerprint(data)
        except TypeError:  # a file name, an iterator: nothing we can fingerprint
            return
        _sources[call.instance] = info
