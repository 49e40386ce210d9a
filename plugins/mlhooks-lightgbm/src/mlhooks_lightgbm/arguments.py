"""A patched call's arguments by name, and the params they show.

LightGBM takes every argument of ``train``, ``cv`` and the estimators' ``fit``
positionally as well as by keyword; so must mlhooks, reading them and handing the
training loop its callback in a new ``callbacks`` argument, in the form (positional
or keyword) the caller used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from types import FunctionType, MethodType
from typing import Any

from mlhooks.plugin import Call

_BOUND_METHOD_SELF = 1


@functools.cache
def _signature(function: Callable[..., Any], bound: bool) -> inspect.Signature:
    signature = inspect.signature(function)
    if bound:  # a method called on its instance: without ``self``
        parameters = list(signature.parameters.values())[_BOUND_METHOD_SELF:]
        signature = signature.replace(parameters=parameters)
    return signature


def signature_of(function: Callable[..., Any]) -> inspect.Signature:
    """``function``'s signature, cached by the plain function: a bound method (or
    anything else the wrapper may hand over, such as a method bound by a partial)
    is never a key of the cache, which would keep its instance alive."""
    if type(function) is MethodType and type(function.__func__) is FunctionType:
        return _signature(function.__func__, True)
    if type(function) is FunctionType:  # exactly: a proxy may pass for one
        return _signature(function, False)
    return inspect.signature(function)


def bind(call: Call, reference: Callable[..., Any] | None = None) -> inspect.BoundArguments:
    """The call's arguments as ``reference`` (LightGBM's function: what is patched may
    be someone else's wrapper) or the callee names them. Raises TypeError when they do
    not fit it (the original then raises its own error)."""
    return signature_of(reference or call.wrapped).bind(*call.args, **call.kwargs)


def arguments(bound: inspect.BoundArguments) -> dict[str, Any]:
    """Every argument by name, defaults included (``bound`` is left as it is)."""
    values = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    values.apply_defaults()
    return dict(values.arguments)


def replace_argument(call: Call, bound: inspect.BoundArguments, name: str, value: Any) -> None:
    """Give the original ``value`` as argument ``name``: positionally when the caller
    passed it (or a later one) positionally, by keyword otherwise. New ``args`` and
    ``kwargs`` objects: the caller's are not changed."""
    changed = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    changed.arguments[name] = value
    call.args, call.kwargs = tuple(changed.args), dict(changed.kwargs)


def param_value(value: Any) -> Any:
    """What a param shows: a function's name, a path as text, a numpy scalar's number,
    the type of an object we do not spell out (a Booster, a Dataset, a splitter, an
    array), the value otherwise."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, PurePath):
        return str(value)
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", None) or type(value).__name__
    if isinstance(value, (list, tuple)):
        return [param_value(item) for item in value]
    if isinstance(value, Mapping):
        return {key: param_value(item) for key, item in value.items()}
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()  # a numpy scalar: its number
    if module in ("lightgbm", "sklearn", "numpy", "pandas", "scipy"):
        return type(value).__name__
    return value


def params_of(given: Any) -> dict[str, Any]:
    """LightGBM's ``params`` dict as the user passed it, each value shown as a param."""
    if not isinstance(given, Mapping):
        return {}
    return {str(key): param_value(value) for key, value in given.items()}


def call_params(values: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The effective arguments among ``names`` (None means not used)."""
    return {name: param_value(values[name]) for name in names if values.get(name) is not None}
