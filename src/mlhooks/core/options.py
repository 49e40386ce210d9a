"""Per-framework options: the common ones every integration sees, and its own.

An integration declares what ``autolog(<name>={...})`` takes as a frozen dataclass
that subclasses :class:`FrameworkOptions`: the common options are inherited, its own
are fields with a type and a default. :meth:`FrameworkOptions.build` checks a user's
dict against that declaration, so that a misspelt key or a value of the wrong type is
an error naming the framework, the option and what it takes, never an option silently
ignored.
"""

from __future__ import annotations

import difflib
import functools
import numbers
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

OptionsT = TypeVar("OptionsT", bound="FrameworkOptions")


@dataclass(frozen=True)
class FrameworkOptions:
    """The options a framework's fits follow: ``autolog()``'s, with the framework's
    overrides on top (``autolog(sklearn={"log_models": False})``).

    Subclass it, as a ``@dataclass(frozen=True)`` with a default for every field, to
    declare an integration's own options, and set it as ``Integration.options``. A
    ``__post_init__`` may refuse values with ``ValueError`` (call
    ``super().__post_init__()``). Plugins read them typed: ``MyOptions.of(session.settings)``.
    """

    log_models: bool = True
    log_datasets: bool = True
    log_input_examples: bool = False
    log_model_signatures: bool = True
    exclusive: bool = False
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    log_every_n_steps: int | None = None
    registered_model_name: str | None = None

    def __post_init__(self) -> None:
        if self.log_every_n_steps is not None and self.log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be at least 1, not {self.log_every_n_steps}")

    @classmethod
    def of(cls: type[OptionsT], options: FrameworkOptions) -> OptionsT:
        """``options`` as this class: itself when it is one, else this class's
        defaults with the common options of ``options`` (its integration was not
        registered when they were resolved)."""
        if isinstance(options, cls):
            return options
        return cls(**{name: getattr(options, name) for name in common_options()})

    @classmethod
    def build(
        cls: type[OptionsT],
        framework: str,
        values: Mapping[str, Any],
        base: Mapping[str, Any] | None = None,
    ) -> OptionsT:
        """The options ``autolog(<framework>=values)`` asks for, over ``base`` (values
        already checked, such as ``autolog()``'s common ones).

        Raises TypeError for a key the class does not declare or a value of the wrong
        type, ValueError for a value the class refuses; each names the framework."""
        declared = option_types(cls)
        checked: dict[str, Any] = dict(base or {})
        for key, value in values.items():
            if key not in declared:
                raise TypeError(unknown_option_message(framework, key, cls))
            checked[key] = convert(f"autolog({framework}={{...}})", key, value, declared[key])
        try:
            return cls(**checked)
        except ValueError as error:
            raise ValueError(f"autolog({framework}={{...}}): {error}") from None


@functools.cache
def common_options() -> tuple[str, ...]:
    """The options every framework takes."""
    return tuple(f.name for f in fields(FrameworkOptions))


def option_types(cls: type[FrameworkOptions]) -> dict[str, Any]:
    """Option name -> its type, for the dataclass ``cls``."""
    found = _types.get(cls)
    if found is None:
        check_declaration(cls)
        hints = get_type_hints(cls)
        found = _types[cls] = {f.name: hints[f.name] for f in fields(cls) if f.init}
    return found


_types: dict[type[FrameworkOptions], dict[str, Any]] = {}


def check_declaration(cls: object) -> None:
    """TypeError unless ``cls`` is a usable options declaration."""
    if not (isinstance(cls, type) and issubclass(cls, FrameworkOptions)):
        raise TypeError(f"options must be a subclass of FrameworkOptions, not {cls!r}")
    declared = {f.name for f in fields(cls)}
    annotated = set(vars(cls).get("__annotations__", {}))
    if not annotated <= declared:
        raise TypeError(f"{cls.__qualname__} must be decorated with @dataclass(frozen=True)")
    try:
        get_type_hints(cls)
    except Exception as error:  # noqa: BLE001 - NameError, TypeError, ... of annotations
        raise TypeError(
            f"the annotations of {cls.__qualname__} must be importable at run time "
            f"(not only under TYPE_CHECKING): {error}"
        ) from None


def unknown_option_message(framework: str, key: str, cls: type[FrameworkOptions]) -> str:
    """Which options there are, and the nearest ones to ``key``."""
    names = sorted(option_types(cls))
    own = [name for name in names if name not in common_options()]
    common = [name for name in names if name in common_options()]
    listed = f"{', '.join(own)}, and the common ones: " if own else "the common ones: "
    return (
        f"autolog({framework}={{...}}) got an unknown option {key!r}{suggest(key, names) or '.'} "
        f"The options of {framework}: {listed}{', '.join(common)}"
    )


_NUMBERS = {int: numbers.Integral, float: numbers.Real}
"""Values an int or float option takes: numpy's scalars too (not bools)."""


class _Mismatch(Exception):
    """A value that is not of the expected type."""


def convert(where: str, key: str, value: Any, expected: Any) -> Any:
    """``value`` as an option of type ``expected`` (a list for a tuple, a numpy integer
    for an int); TypeError naming ``key``, ``where`` and the type otherwise."""
    try:
        return _convert(value, expected)
    except _Mismatch:
        raise TypeError(
            f"{where}: {key!r} must be {describe(expected)}, not {value!r} ({type(value).__name__})"
        ) from None


def _convert(value: Any, expected: Any) -> Any:
    origin, args = get_origin(expected), get_args(expected)
    if expected is Any:
        return value
    if expected is None or expected is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is Union or origin is types.UnionType:
        for option in args:
            try:
                return _convert(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if expected is bool:
        return _instance(value, bool)
    if expected in (int, float):
        if isinstance(value, bool) or not isinstance(value, _NUMBERS[expected]):
            raise _Mismatch
        return expected(value)
    if origin in (tuple, list, Sequence, set, frozenset):
        return _collection(value, origin, args)
    if origin in (dict, Mapping):
        mapping = _instance(value, Mapping)
        key_type, value_type = args or (Any, Any)
        return {_convert(k, key_type): _convert(v, value_type) for k, v in mapping.items()}
    if isinstance(origin, type):
        return _instance(value, origin)
    if isinstance(expected, type):
        return _instance(value, expected)
    return value  # a form we cannot check (a Callable, a Protocol): taken as given


def _collection(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _Mismatch
    items = list(value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise _Mismatch
        return tuple(_convert(item, kind) for item, kind in zip(items, args, strict=True))
    kind = args[0] if args else Any
    converted = [_convert(item, kind) for item in items]
    if origin in (set, frozenset):
        return frozenset(converted)
    return converted if origin is list else tuple(converted)


def _instance(value: Any, kind: type) -> Any:
    if isinstance(value, kind):
        return value
    raise _Mismatch


def describe(expected: Any) -> str:
    """A type as a message says it: ``int or None``, ``'epoch' or 'global_step'``."""
    origin, args = get_origin(expected), get_args(expected)
    if expected is None or expected is type(None):
        return "None"
    if origin is Union or origin is types.UnionType:
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (tuple, list, Sequence, set, frozenset):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a tuple of {', '.join(describe(a) for a in args)}"
        return f"a list of {describe(args[0]) if args else 'values'}"
    if origin in (dict, Mapping):
        if args:
            return f"a dict of {describe(args[0])} to {describe(args[1])}"
        return "a dict"
    if expected is Any:
        return "any value"
    return getattr(expected, "__name__", repr(expected))


def suggest(name: str, candidates: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the candidates closest to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=2)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
