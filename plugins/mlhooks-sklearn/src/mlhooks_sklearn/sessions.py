"""What every tracked scikit-learn fit starts with: the session named after the
estimator, its params and tags, and the fingerprints of its training data."""

from __future__ import annotations

from typing import Any

from mlhooks.plugin import FitSession

from . import data

FRAMEWORK = "sklearn"


def params_of(model: Any) -> dict[str, Any]:
    """``get_params(deep=True)``: nested names as sklearn spells them (``regressor__alpha``)."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    params: dict[str, Any] = get_params(deep=True)
    return params


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
    for value, default in ((X, "X"), (y, "y")):
        if value is not None:
            session.log_dataset(value, name=data.variable_name(value) or default, context="train")
