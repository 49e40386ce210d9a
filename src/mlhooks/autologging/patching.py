"""Safe patching on wrapt: the six safety rules of mlhooks, in one place.

1. The original is called exactly once, with the caller's arguments (or, only when an
   integration deliberately replaces them, e.g. to add a callback, with those).
2. An exception from the original propagates unchanged: the same object.
3. An exception from our own code never reaches the user: one warning per site and
   the original's result (``MLHOOKS_STRICT=1`` re-raises instead).
4. Nested patched calls are tracked once, at the outermost call (a per-thread guard).
   A handler may still adjust the arguments of a nested call (:meth:`CallHandler.nested`),
   and user code that a tracked call runs may be tracked on its own (:func:`user_code`).
5. Patching is idempotent and exactly reversible: ``unpatch_all`` puts back the very
   object that was there (``is`` the original).
6. Version ranges are checked by :mod:`mlhooks.autologging.integration` before patching.

An integration describes what to do around a call with a :class:`CallHandler`; the
:class:`Patcher` wraps the target and enforces the rules around the handler.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import wrapt

from mlhooks.core.errors import report_internal_error, warn_once

_guard = threading.local()


def tracking_depth() -> int:
    """How many tracked calls are running on this thread (0 outside any)."""
    return getattr(_guard, "depth", 0)


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Within this block, patched calls on this thread run untracked."""
    _guard.depth = tracking_depth() + 1
    try:
        yield
    finally:
        _guard.depth -= 1


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Within this block, patched calls on this thread are tracked again, as outermost
    calls: for the user's code that a tracked call runs, whose own fits are fits of
    their own (an Optuna objective inside ``Study.optimize``)."""
    depth = tracking_depth()
    _guard.depth = 0
    try:
        yield
    finally:
        _guard.depth = depth


@dataclass
class Call:
    """One intercepted call, as a :class:`CallHandler` sees it."""

    wrapped: Any
    instance: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    """Anything the handler wants to keep between ``before`` and ``after``."""


class CallHandler:
    """What an integration does around a patched call. All three methods are optional.

    ``before`` may replace ``call.args``/``call.kwargs`` (with new objects: never mutate
    the caller's) when the integration must pass something extra to the original.
    """

    def before(self, call: Call) -> None:
        """Runs before the original."""

    def after(self, call: Call, result: Any) -> None:
        """Runs after the original returned ``result``."""

    def failed(self, call: Call, error: BaseException) -> None:
        """Runs after the original raised ``error`` (which then propagates unchanged)."""

    def nested(self, call: Call) -> None:
        """Runs instead of the three above when this call is nested in another tracked
        call on this thread (which alone is tracked). It may replace ``call.args`` or
        ``call.kwargs``, e.g. to hand the outer call's callback to an inner training
        loop. Handlers that do not override it add no cost to nested calls."""


@dataclass
class _Patch:
    owner: Any
    attribute: str
    original: Any
    wrapper: Any
    active: bool = True


class Patcher:
    """Applies and removes the patches of one integration."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._patches: dict[tuple[int, str], _Patch] = {}
        self._lock = threading.RLock()

    def wrap(self, owner: Any, attribute: str, handler: CallHandler) -> None:
        """Patch ``owner.<attribute>`` (defined in ``owner`` itself) so that ``handler``
        runs around every call. Patching the same attribute again does nothing."""
        with self._lock:
            key = (id(owner), attribute)
            existing = self._patches.get(key)
            if existing is not None and _in_chain(_current(owner, attribute), existing.wrapper):
                return  # still patched (perhaps beneath someone else's wrapper)
            if existing is not None:
                existing.active = False  # replaced by someone: ours must not track any more
            if attribute not in vars(owner):
                raise AttributeError(
                    f"{owner!r} does not define {attribute!r} itself; patch the class that does"
                )
            original = vars(owner)[attribute]
            site = f"{self.name} patch of {getattr(owner, '__qualname__', owner)}.{attribute}"
            record = _Patch(owner, attribute, original, None)
            record.wrapper = wrapt.FunctionWrapper(original, _safe_call(handler, record, site))
            setattr(owner, attribute, record.wrapper)
            self._patches[key] = record

    def unpatch_all(self) -> None:
        """Put every original back, newest patch first."""
        with self._lock:
            for key in reversed(list(self._patches)):
                self._restore(self._patches.pop(key))

    def _restore(self, record: _Patch) -> None:
        record.active = False  # a copy someone kept of the wrapper now just passes through
        if _current(record.owner, record.attribute) is record.wrapper:
            setattr(record.owner, record.attribute, record.original)
            return
        unwrap = getattr(wrapt, "unwrap_object", None)
        if unwrap is not None:
            with contextlib.suppress(Exception):
                unwrap(record.owner, record.attribute, record.wrapper)
                return
        warn_once(
            f"unpatch:{self.name}:{record.attribute}",
            f"mlhooks: {record.owner!r}.{record.attribute} was re-patched by someone else; "
            "our patch there now only passes calls through",
        )

    @property
    def patched(self) -> list[tuple[Any, str]]:
        """(owner, attribute) of every active patch."""
        return [(p.owner, p.attribute) for p in self._patches.values()]

    def is_patched(self, owner: Any, attribute: str) -> bool:
        record = self._patches.get((id(owner), attribute))
        return record is not None and _current(owner, attribute) is record.wrapper


def _current(owner: Any, attribute: str) -> Any:
    return vars(owner).get(attribute)


def _in_chain(current: Any, wrapper: Any, limit: int = 32) -> bool:
    """Whether ``wrapper`` is ``current`` or beneath it in a chain of ``__wrapped__``."""
    for _ in range(limit):
        if current is wrapper:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def _safe_call(handler: CallHandler, record: _Patch, site: str) -> Any:
    """The wrapt wrapper that enforces the safety rules around ``handler``."""

    nested = handler.nested if type(handler).nested is not CallHandler.nested else None

    def call_original(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not record.active:
            return wrapped(*args, **kwargs)
        if tracking_depth():
            if nested is None:
                return wrapped(*args, **kwargs)
            return _nested_call(nested, site, Call(wrapped, instance, args, kwargs))
        # The guard covers our handler too: patched calls it makes are not tracked.
        _guard.depth = 1
        try:
            return _tracked_call(handler, site, Call(wrapped, instance, args, kwargs))
        finally:
            _guard.depth = 0

    return call_original


def _nested_call(nested: Any, site: str, call: Call) -> Any:
    """A call inside another tracked call: only the handler's ``nested`` runs first."""
    args, kwargs = call.args, call.kwargs
    try:
        nested(call)
    except Exception as error:  # noqa: BLE001 - rule 3
        report_internal_error(site, error)
        call.args, call.kwargs = args, kwargs
    return call.wrapped(*call.args, **call.kwargs)


def _tracked_call(handler: CallHandler, site: str, call: Call) -> Any:
    args, kwargs = call.args, call.kwargs
    try:
        handler.before(call)
        tracked = True
    except Exception as error:  # noqa: BLE001 - rule 3
        report_internal_error(site, error)
        tracked = False
        call.args, call.kwargs = args, kwargs
    try:
        result = call.wrapped(*call.args, **call.kwargs)
    except BaseException as error:
        if tracked:
            try:
                handler.failed(call, error)
            except Exception as own_error:  # noqa: BLE001 - never mask the user's error
                report_internal_error(site, own_error, reraise=False)
        raise
    if tracked:
        try:
            handler.after(call, result)
        except Exception as error:  # noqa: BLE001 - rule 3
            report_internal_error(site, error)
    return result
