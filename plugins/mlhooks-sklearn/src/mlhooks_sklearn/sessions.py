"""What every tracked scikit-learn fit starts with: the session named after the
estimator, its params and tags, and the fingerprints of its training data."""

from __future__ import annotations

import weakref
from typing import Any

from mlhooks.plugin import FitSession

from . import data

FRAMEWORK = "sklearn"


def params_of(model: Any) -> dict[str, Any]:
    """``get_params(deep=True)``: nested names as sklearn spells them (``regressor__alpha``).

    For an estimator that keeps ``BaseEstimator``'s ``get_params``, the same values
    without its reading of the constructor's signature on every call (a quarter of a
    millisecond, a fifth of what a small fit's tracking costs): the names are read once
    per class (again if its ``__init__`` changes)."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    names = _param_names(model, get_params)
    if names is None:  # its own get_params (a Pipeline, a meta-estimator)
        params: dict[str, Any] = get_params(deep=True)
        return params
    out: dict[str, Any] = {}
    for key in names:
        value = getattr(model, key)
        if hasattr(value, "get_params") and not isinstance(value, type):
            nested = _param_names(value, value.get_params)
            deep = value.get_params() if nested is None else params_of(value)  # as sklearn
            out.update((f"{key}__{k}", v) for k, v in deep.items())
        out[key] = value
    return out


_names: weakref.WeakKeyDictionary[type, tuple[Any, list[str]]] = weakref.WeakKeyDictionary()
"""Constructor parameter names by class, with the ``__init__`` they were read from."""


def _param_names(model: Any, get_params: Any) -> list[str] | None:
    """The constructor's parameter names of ``model``'s class, read once; None when
    ``get_params`` (the model's bound method) is not ``BaseEstimator``'s, or the class
    has its own ``_get_param_names``."""
    from sklearn.base import BaseEstimator

    base: Any = BaseEstimator
    kind: Any = type(model)
    if getattr(get_params, "__func__", None) is not base.get_params or (
        getattr(getattr(kind, "_get_param_names", None), "__func__", None)
        is not base._get_param_names.__func__
    ):
        return None
    init = kind.__init__
    known = _names.get(kind)
    if known is None or known[0] is not init:
        known = (init, list(kind._get_param_names()))
        _names[kind] = known
    return known[1]


def tags_of(model: Any) -> dict[str, str]:
    kind = type(model)
    return {
        "estimator_name": kind.__name__,
        "estimator_class": f"{kind.__module__}.{kind.__qualname__}",
    }


def new_session(model: Any, name: str | None = None) -> FitSession:
    """The session of a fit of ``model`` (not started yet)."""
    return FitSession(
        FRAMEWORK,
        name or type(model).__name__,
        model=model,
        params=params_of(model),
        tags=tags_of(model),
    )


def log_training_data(session: FitSession, X: Any, y: Any) -> None:
    """Fingerprints of X and y, named as the user's code names them."""
    names = data.variable_names(X, y)
    for value, name, default in ((X, names[0], "X"), (y, names[1], "y")):
        if value is not None:
            session.log_dataset(value, name=name or default, context="train")
