"""Every ``MLHOOKS_*`` environment variable: its name, how it is parsed, its default
and what it does, in one table (:data:`VARIABLES`), read through :func:`get`.

Variables are read when they are used, not cached at import, so a test or a notebook
may change them between runs. A malformed value is a ``ValueError`` naming the
variable and what it takes (:func:`get`); code that must not fail, such as the exit
sequence, uses :func:`mlhooks.core.errors.setting_or_default`, which warns once and
uses the default.

Plugins declare their own variables with :func:`declare` (through
:mod:`mlhooks.plugin`), so that ``mlhooks doctor`` and the README's table (tested
against :data:`VARIABLES`) know them too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def flag(raw: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("is not a boolean; use 1/0, true/false, yes/no or on/off")


def names(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def whole_number(raw: str) -> int | None:
    """An integer of at least 1; blank means unset."""
    if not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("is not an integer") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def seconds(raw: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not value >= 0:  # NaN included
        raise ValueError("must be zero or more seconds")
    return value


def positive_seconds(raw: str) -> float:
    """A number of seconds above zero."""
    value = seconds(raw)
    if value == 0:
        raise ValueError("must be more than zero seconds")
    return value


def seconds_list(raw: str) -> tuple[float, ...]:
    """Comma-separated numbers of seconds."""
    return tuple(seconds(item) for item in names(raw))


def text(raw: str) -> str | None:
    """Any text; blank means unset."""
    return raw.strip() or None


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``parse`` turns its text into a value (ValueError
    when it cannot); ``default`` is used when it is unset."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    default_text: str = ""
    """How the default reads in the docs when ``repr(default)`` would not say it."""
    owner: str = "mlhooks"


VARIABLES: dict[str, Variable] = {}


def declare(
    name: str,
    parse: Callable[[str], Any],
    default: Any,
    doc: str,
    *,
    default_text: str = "",
    owner: str = "mlhooks",
) -> Variable:
    """Add a variable to the table (a plugin's own, say); returns it. Declaring the
    same name again with the same parser is harmless (a module imported twice)."""
    if not name.startswith("MLHOOKS_"):
        raise ValueError(f"setting names start with MLHOOKS_, not {name!r}")
    known = VARIABLES.get(name)
    if known is not None and known.owner != owner:
        raise ValueError(f"{name} is already declared by {known.owner}")
    variable = Variable(name, parse, default, doc, default_text, owner)
    VARIABLES[name] = variable
    return variable


def is_set(name: str) -> bool:
    """Whether ``name`` is in the environment (even empty)."""
    _variable(name)
    return name in os.environ


def get(name: str) -> Any:
    """The value of ``name``: parsed from the environment, else its default.
    ValueError names the variable, its value and what it takes."""
    variable = _variable(name)
    raw = os.environ.get(name)
    if raw is None:
        return variable.default
    try:
        return variable.parse(raw)
    except ValueError as error:
        raise ValueError(f"{name}={raw!r} {error} ({variable.doc})") from None


def default(name: str) -> Any:
    """The value ``name`` has when it is unset."""
    return _variable(name).default


def default_text(variable: Variable) -> str:
    """The default as the docs say it: ``1``/``0`` for flags, plain numbers."""
    if variable.default_text:
        return variable.default_text
    value = variable.default
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def markdown_table() -> str:
    """The README's table of variables, one row each, in declaration order."""
    rows = ["| Variable | Meaning (default) |", "| --- | --- |"]
    rows += [f"| `{v.name}` | {v.doc} ({default_text(v)}) |" for v in VARIABLES.values()]
    return "\n".join(rows) + "\n"


def _variable(name: str) -> Variable:
    try:
        return VARIABLES[name]
    except KeyError:
        raise KeyError(f"{name} is not a declared mlhooks setting") from None


# -- the core's variables, in the order the README lists them -----------------------------

declare(
    "MLHOOKS_BACKENDS",
    names,
    None,
    "comma-separated backend names",
    default_text="`mlflow` when its plugin is installed, else `local`",
)
declare("MLHOOKS_LOCAL_DIR", text, None, "root of the local store", default_text="`./mlhooks-runs`")
declare("MLHOOKS_EXPERIMENT", text, None, "experiment of new runs", default_text="none")
declare(
    "MLHOOKS_STRICT",
    flag,
    False,
    "`1`: raise mlhooks' own errors instead of warning; the tests turn it on",
)
declare(
    "MLHOOKS_PLUGINS",
    names,
    (),
    "load only these entry-point plugins, comma-separated",
    default_text="all",
)
declare(
    "MLHOOKS_DISABLE_PLUGINS",
    names,
    (),
    "never load these entry-point plugins",
    default_text="none",
)
declare(
    "MLHOOKS_FRAMEWORKS",
    names,
    None,
    "autolog only these integrations, e.g. `sklearn,xgboost`",
    default_text="all installed",
)
declare("MLHOOKS_LOG_MODELS", flag, True, "autolog models")
declare("MLHOOKS_LOG_DATASETS", flag, True, "autolog dataset fingerprints")
declare("MLHOOKS_LOG_INPUT_EXAMPLES", flag, False, "store a few input rows with each model")
declare("MLHOOKS_LOG_MODEL_SIGNATURES", flag, True, "store each model's input/output schema")
declare(
    "MLHOOKS_LOG_EVERY_N_STEPS",
    whole_number,
    None,
    "step-level metrics every N steps",
    default_text="each framework's own",
)
declare("MLHOOKS_EXCLUSIVE", flag, False, "autolog only into runs mlhooks opens, never into yours")
declare("MLHOOKS_SILENT", flag, False, "no mlhooks warnings during autologging")
declare(
    "MLHOOKS_ALLOW_UNSUPPORTED", flag, False, "patch frameworks outside their supported versions"
)
declare(
    "MLHOOKS_FLUSH_TIMEOUT", seconds, 30.0, "seconds `end_run` waits for a run's data to be stored"
)
declare(
    "MLHOOKS_EXIT_TIMEOUT",
    seconds,
    60.0,
    "seconds the writer gets at interpreter exit before the rest is spooled (with the "
    "writer service: the service's time after its process exited)",
)
declare(
    "MLHOOKS_RETRY_DELAYS",
    seconds_list,
    (0.1, 0.3, 1.0, 2.0),
    "retry delays in seconds before spooling",
    default_text="`0.1,0.3,1,2`",
)
declare(
    "MLHOOKS_PROBE_INTERVAL",
    positive_seconds,
    5.0,
    "seconds between attempts to replay a spool into a down backend",
)
declare(
    "MLHOOKS_JOURNAL",
    flag,
    True,
    "write each backend's operations to a journal first, so that a killed process loses "
    "at most `MLHOOKS_JOURNAL_INTERVAL` seconds of data",
)
declare(
    "MLHOOKS_SERVICE",
    flag,
    True,
    "run the backends that declare it (MLflow, TensorBoard) in a writer service process "
    "that stores what the training process journals, so that their work takes no CPU "
    "or GIL from training; `0`: in the training process, on writer threads",
)
declare(
    "MLHOOKS_SERVICE_DEFER",
    seconds,
    5.0,
    "seconds the writer service holds back its start (importing MLflow, opening the "
    "store) while the process's first fit trains, so that it takes nothing from it; it "
    "starts sooner once 2 fits ended, no fit ran for 1 s, or something waits for it "
    "(`flush()`, the exit); `0`: at once",
)
declare(
    "MLHOOKS_JOURNAL_INTERVAL",
    positive_seconds,
    0.5,
    "seconds between two writes of the journal (what a SIGKILL may lose)",
)
declare(
    "MLHOOKS_LOG_CONTEXT",
    text,
    None,
    "run context to capture: `1` (all), `0`, or parts such as `git,platform`",
    default_text="`1`; see [docs/context.md](docs/context.md)",
)
declare(
    "MLHOOKS_LOG_SYSTEM_METRICS", flag, False, "sample `system/*` metrics while runs are active"
)
declare(
    "MLHOOKS_SYSTEM_METRICS_INTERVAL",
    positive_seconds,
    10.0,
    "seconds between system metric samples",
)
declare(
    "MLHOOKS_REDACT_KEYS",
    names,
    (),
    "more comma-separated key words whose values are stored as `***`",
    default_text="none",
)
