"""Capturing models: the bytes are taken when a model is reported, on the calling thread,
so that a later refit cannot change what the writer stores afterwards."""

from __future__ import annotations

import pickle
from typing import Any

from mlhooks.core.types import ModelArtifact

_FLAVORS = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "pytorch",
    "lightning": "pytorch",
    "pytorch_lightning": "pytorch",
}


def infer_flavor(model: Any) -> str:
    """The flavor name for ``model``'s framework (``python`` when unknown)."""
    for klass in type(model).__mro__:
        top = klass.__module__.split(".")[0]
        if top in _FLAVORS:
            return _FLAVORS[top]
    return "python"


def capture(model: Any, name: str, *, flavor: str | None = None, **metadata: Any) -> ModelArtifact:
    """A :class:`ModelArtifact` holding a pickle of ``model`` as it is now.

    Raises ValueError naming the model's type when it cannot be pickled.
    """
    try:
        payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise ValueError(
            f"cannot log model {name!r}: a {type(model).__qualname__} cannot be pickled ({error})"
        ) from error
    metadata.setdefault("class", f"{type(model).__module__}.{type(model).__qualname__}")
    return ModelArtifact(
        name=name,
        flavor=flavor or infer_flavor(model),
        payload=payload,
        format="pickle",
        metadata=metadata,
    )
