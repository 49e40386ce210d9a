"""Capturing models: the bytes are taken when a model is reported, on the calling thread,
so that a later refit cannot change what the writer stores afterwards.

A model is pickled. Pickle names functions and classes by reference (module and name),
which only works where that name can be imported again: not for a lambda, a closure or
a class defined inside a function (pickle refuses them), nor, in another process such
as ``mlhooks sync`` or the writer service, for what the user's script defines (its
module is ``__main__``, or ``__mp_main__`` in a process ``multiprocessing`` spawned: a
``ddp_spawn`` rank, say). Such models are pickled with cloudpickle instead (when
installed; MLflow brings it), which carries that code by value, as MLflow's own
autologging does.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
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
_SCRIPTS = ("__main__", "__mp_main__")
"""The names of the running script's module: in a pickle, they name something of it (a
false match costs only the slower cloudpickle)."""
_by_value_lock = threading.Lock()


def infer_flavor(model: Any) -> str:
    """The flavor name for ``model``'s framework (``python`` when unknown)."""
    for klass in type(model).__mro__:
        top = klass.__module__.split(".")[0]
        if top in _FLAVORS:
            return _FLAVORS[top]
    return "python"


def serialize(model: Any) -> tuple[bytes, str]:
    """``model``'s bytes and their format: ``pickle``, or ``cloudpickle`` when pickle
    refuses the model or names code of the running script in it.

    Raises ValueError naming the model's type and the reason when neither can.
    """
    try:
        payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 - any object, any failure
        refused: Exception | None = error
    else:
        if not any(name.encode() in payload for name in _SCRIPTS):
            return payload, "pickle"
        refused = None
    cloudpickle = _cloudpickle()
    if cloudpickle is not None:
        try:
            return _dumps_by_value(cloudpickle, model), "cloudpickle"
        except Exception as error:  # noqa: BLE001
            refused = refused or error
    if refused is None:
        return payload, "pickle"  # by reference: loadable where the script's names are
    raise ValueError(f"a {type(model).__qualname__} cannot be pickled ({refused})") from refused


def capture(model: Any, name: str, *, flavor: str | None = None, **metadata: Any) -> ModelArtifact:
    """A :class:`ModelArtifact` holding the bytes of ``model`` as it is now.

    Raises ValueError naming the model's type when it cannot be pickled.
    """
    try:
        payload, format = serialize(model)
    except ValueError as error:
        raise ValueError(f"cannot log model {name!r}: {error}") from error
    metadata.setdefault("class", class_name(model))
    return ModelArtifact(
        name=name,
        flavor=flavor or infer_flavor(model),
        payload=payload,
        format=format,
        metadata=metadata,
    )


def unsaveable(
    model: Any, name: str, reason: str, *, flavor: str | None = None, **metadata: Any
) -> ModelArtifact:
    """A :class:`ModelArtifact` for ``model``, which cannot be captured, holding only
    why: every backend sets it aside with that reason (``mlhooks sync --rejected``)."""
    metadata.setdefault("class", class_name(model))
    return ModelArtifact(
        name=name,
        flavor=flavor or infer_flavor(model),
        format=ModelArtifact.UNSAVEABLE,
        metadata={**metadata, "reason": reason},
    )


def _dumps_by_value(cloudpickle: Any, model: Any) -> bytes:
    """cloudpickle's bytes of ``model``, the script's code in them by value. cloudpickle
    carries ``__main__``'s code so by itself, but names ``__mp_main__`` (the script in a
    spawned process) by reference: that module is registered with it meanwhile."""
    spawned = sys.modules.get("__mp_main__")
    if spawned is None or getattr(spawned, "__name__", None) != "__mp_main__":
        by_value: bytes = cloudpickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        return by_value
    with _by_value_lock:
        registered = "__mp_main__" in cloudpickle.list_registry_pickle_by_value()
        if not registered:
            cloudpickle.register_pickle_by_value(spawned)
        try:
            by_value = cloudpickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            if not registered:
                cloudpickle.unregister_pickle_by_value(spawned)
    return by_value


def _cloudpickle() -> Any:
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        return None


def class_name(model: Any) -> str:
    """``module.QualifiedName`` of ``model``'s class: a model's ``class`` fact."""
    return f"{type(model).__module__}.{type(model).__qualname__}"
