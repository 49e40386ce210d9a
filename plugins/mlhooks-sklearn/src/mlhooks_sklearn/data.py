"""Reading a call's data: X and y from the arguments, their variable names in the
user's code, a few copied rows for a model's signature."""

from __future__ import annotations

import inspect
import sys
from types import FrameType
from typing import Any

from mlhooks.plugin import Call

_X_NAMES = ("X", "raw_documents", "K")
_Y_NAMES = ("y", "Y")
_OUR_MODULES = ("mlhooks", "wrapt", "sklearn", "joblib", "threadpoolctl", "functools")
_MAX_FRAMES = 40
_SNAPSHOT_LOCALS = sys.version_info < (3, 13)


def argument(call: Call, position: int, names: tuple[str, ...]) -> Any:
    """The argument at ``position``, else the first keyword of ``names`` given."""
    if len(call.args) > position:
        return call.args[position]
    for name in names:
        if name in call.kwargs:
            return call.kwargs[name]
    return None


def features(call: Call) -> Any:
    return argument(call, 0, _X_NAMES)


def targets(call: Call) -> Any:
    return argument(call, 1, _Y_NAMES)


def variable_name(value: Any) -> str | None:
    """The name the user's code gives ``value`` (the first frame outside mlhooks,
    wrapt and scikit-learn), or None."""
    return _names_seen_from(sys._getframe(1), (value,))[0]


def variable_names(*values: Any) -> list[str | None]:
    """The names the user's code gives ``values`` (see :func:`variable_name`), found
    in one walk up the stack; None for a value it does not name (or that is None)."""
    return _names_seen_from(sys._getframe(1), values)


def _names_seen_from(frame: FrameType | None, values: tuple[Any, ...]) -> list[str | None]:
    """The names of ``values`` in the first frame from ``frame`` up that is not ours."""
    found: list[str | None] = [None] * len(values)
    if all(value is None for value in values):
        return found
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return found
        if not frame.f_globals.get("__name__", "").startswith(_OUR_MODULES):
            break
        frame = frame.f_back
    if frame is None or frame.f_globals.get("__name__", "").startswith(_OUR_MODULES):
        return found
    names = frame.f_locals
    try:
        for name, candidate in names.items():
            if name.startswith("_"):
                continue
            for index, value in enumerate(values):
                if found[index] is None and value is not None and candidate is value:
                    found[index] = str(name)
        return found
    finally:
        if _SNAPSHOT_LOCALS and frame.f_code.co_flags & inspect.CO_OPTIMIZED:
            # Before 3.13, a function's f_locals is a snapshot the frame keeps: it would
            # keep alive whatever the function later deletes (a model, a big array).
            names.clear()


def sample_rows(X: Any, rows: int = 5) -> Any:
    """A copy of the first ``rows`` rows of ``X`` (None for what cannot be sliced), taken
    now: the writer infers the model's signature from it later."""
    try:
        if hasattr(X, "iloc"):
            return X.iloc[:rows].copy()
        if hasattr(X, "shape") and hasattr(X, "copy"):
            return X[:rows].copy()
        if isinstance(X, list):
            return X[:rows]
    except Exception:  # noqa: BLE001 - an exotic container: no sample, no signature
        return None
    return None
