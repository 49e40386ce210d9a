"""Checks on what users and integrations log, with two behaviours.

A user calling ``mlhooks.log_*`` with bad input gets a ``ValueError`` naming the key
and the reason. Autologging must never stop training, so there the same problem is
*sanitized* (a usable key or value is made from it) with one warning.

The limits are those of the strictest shipped backend (MLflow), checked where a value
enters, so that no backend ever rejects a value later, on the writer thread, where it
could only be set aside: keys of at most 250 letters, digits, ``_ - . : /`` and spaces
that name no other path (``a//b``, ``./a``, ``a/``, ``..``); param values of at most
6,000 characters and tag values of at most 8,000; steps and timestamps that fit in 64
bits, timestamps not negative; artifact paths and run ids that stay inside the store.
"""

from __future__ import annotations

import math
import numbers
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from mlhooks.core.errors import warn_once

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_KEY_CHARS = re.compile(r"[/\w.\- :]*")
_NOT_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")
_VALUE_LIMITS = {"param": MAX_PARAM_VALUE_LENGTH, "tag": MAX_TAG_VALUE_LENGTH}

checked_keys: set[str] = set()
"""Keys already found valid (bounded), so the hot path skips the checks."""


class InvalidInput(ValueError):
    """Input that cannot be stored; the message names the key and the reason."""


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be used as a metric, param or tag name, or None if it can."""
    if not isinstance(key, str):
        return f"keys must be strings, not {type(key).__name__}"
    if not key.strip():
        return "keys must not be empty or blank"
    if len(key) > MAX_KEY_LENGTH:
        return f"keys must be at most {MAX_KEY_LENGTH} characters (this one has {len(key)})"
    if _BAD_KEY_CHARS.search(key):
        return "keys must not contain control characters such as newlines or tabs"
    if key.startswith("/") or ".." in key.split("/"):
        return "keys must not start with '/' or contain '..' path parts"
    if not _KEY_CHARS.fullmatch(key):
        bad = "".join(sorted(set(_NOT_KEY_CHARS.findall(key))))
        return (
            f"keys may only contain letters, digits, '_', '-', '.', ':', '/' and spaces, "
            f"not {bad!r}"
        )
    if posixpath.normpath(key) != key:
        return f"keys must not name another path ({posixpath.normpath(key)!r})"
    return None


def sanitize_key(key: object) -> str:
    """A usable key made from ``key``: stringified, characters a store refuses
    replaced by ``_``, path parts normalized, truncated to the maximum length."""
    text = key if isinstance(key, str) else str(key)
    text = _NOT_KEY_CHARS.sub("_", text).strip().lstrip("/")
    parts = ("_" if part == ".." else part for part in text.split("/"))
    text = "/".join(part for part in parts if part not in ("", "."))
    return text[:MAX_KEY_LENGTH].rstrip("/") or "_"


def check_key(key: object, what: str, *, strict: bool) -> str:
    """``key`` if valid; else raise (``strict``) or return a sanitized key with a warning."""
    if type(key) is str and key in checked_keys:
        return key
    problem = key_problem(key)
    if problem is None:
        assert isinstance(key, str)
        if len(checked_keys) < 100_000:
            checked_keys.add(key)
        return key
    if strict:
        raise InvalidInput(f"invalid {what} key {key!r}: {problem}")
    fixed = sanitize_key(key)
    warn_once(
        f"key:{what}:{key!r}",
        f"mlhooks: {what} key {key!r} is invalid ({problem}); logged as {fixed!r}",
    )
    return fixed


def metric_value(key: str, value: object, *, strict: bool) -> float | None:
    """``value`` as a float (NaN and infinities included). Non-numbers raise
    (``strict``) or give None with a warning, meaning "skip this point"."""
    if type(value) is float:
        return value
    if isinstance(value, (numbers.Real, bool)) or _is_array_scalar(value):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            pass
    problem = f"metric {key!r} must be a real number, not {type(value).__name__} {value!r:.80}"
    if strict:
        raise InvalidInput(problem)
    warn_once(f"metric-value:{key}", f"mlhooks: {problem}; the point was skipped")
    return None


def clean_metrics(metrics: Mapping[Any, Any], *, strict: bool) -> dict[str, float]:
    """Checked keys and float values of ``metrics``; without ``strict``, bad keys are
    sanitized and non-numeric values dropped, each with one warning."""
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if type(key) is not str or key not in checked_keys:
            key = check_key(key, "metric", strict=strict)
        if type(value) is not float:
            value = metric_value(key, value, strict=strict)
            if value is None:
                continue
        clean[key] = value
    return clean


def _is_array_scalar(value: object) -> bool:
    """A 0-d array or scalar of numpy, torch, JAX, ... (``ndim == 0`` with ``item()``)."""
    return getattr(value, "ndim", None) == 0 and hasattr(value, "item")


def step_value(step: object, *, strict: bool) -> int:
    """``step`` as a 64-bit int. Non-integers raise (``strict``) or become 0 with a
    warning; integers past 64 bits raise or are clamped to the nearest one."""
    value: int | None = None
    if type(step) is int or isinstance(step, numbers.Integral):
        value = int(step)
    elif _is_array_scalar(step) and float(step).is_integer():  # type: ignore[arg-type]
        value = int(float(step))  # type: ignore[arg-type]
    if value is None:
        if strict:
            raise InvalidInput(f"step must be an integer, not {type(step).__name__} {step!r:.80}")
        warn_once("step-value", f"mlhooks: step {step!r:.80} is not an integer; using 0")
        return 0
    if INT64_MIN <= value <= INT64_MAX:
        return value
    problem = f"step {value} does not fit in 64 bits ({INT64_MIN} to {INT64_MAX})"
    if strict:
        raise InvalidInput(problem)
    clamped = min(max(value, INT64_MIN), INT64_MAX)
    warn_once("step-range", f"mlhooks: {problem}; stored at step {clamped}")
    return clamped


def timestamp_value(timestamp: object, *, strict: bool) -> int | None:
    """``timestamp`` (milliseconds since the epoch) as an int from 0 to 2**63-1. A bad
    one raises (``strict``) or gives None with a warning, meaning "use the time now"."""
    value: int | None = None
    if isinstance(timestamp, bool):
        value = None  # True is not a time
    elif type(timestamp) is int:
        value = timestamp
    elif isinstance(timestamp, numbers.Real):
        number = float(timestamp)
        value = int(number) if math.isfinite(number) else None
    elif _is_array_scalar(timestamp):
        number = float(timestamp)  # type: ignore[arg-type]
        value = int(number) if math.isfinite(number) else None
    if value is not None and 0 <= value <= INT64_MAX:
        return value
    problem = (
        "timestamp must be milliseconds since the epoch, a whole number from 0 to 2**63-1, "
        f"not {type(timestamp).__name__} {timestamp!r:.80}"
    )
    if strict:
        raise InvalidInput(problem)
    warn_once("timestamp-value", f"mlhooks: {problem}; the time of logging is used")
    return None


def param_value(value: object) -> str:
    """How a param value is stored: its string form (``None`` becomes ``"None"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a user object whose __str__ fails
        return f"<unprintable {type(value).__name__}>"


def tag_value(value: object) -> str:
    return param_value(value)


def clean_entries(entries: Mapping[Any, Any], what: str, *, strict: bool) -> dict[str, str]:
    """Params or tags (``what``) with checked keys and string values within the
    length limit; too long a value raises (``strict``) or is cut with a warning."""
    limit = _VALUE_LIMITS[what]
    clean: dict[str, str] = {}
    for key, value in entries.items():
        key = check_key(key, what, strict=strict)
        text = param_value(value)
        if len(text) > limit:
            problem = (
                f"{what} {key!r} has a value of {len(text)} characters, more than the "
                f"{limit} a store keeps"
            )
            if strict:
                raise InvalidInput(f"{problem}; log long text as an artifact instead")
            warn_once(f"{what}-length:{key}", f"mlhooks: {problem}; it was cut to {limit}")
            text = text[:limit]
        clean[key] = text
    return clean


def check_artifact_path(path: object, *, strict: bool) -> str | None:
    """``path`` (a folder inside the run's artifacts; None for their root) if it stays
    inside them: relative, no ``..``, no empty parts. Otherwise raise (``strict``) or
    return it made relative, with a warning."""
    if path is None:
        return None
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if isinstance(text, str) and text == posixpath.normpath(text) and _inside(text):
        return text if text != "." else None
    problem = (
        f"artifact path {path!r:.200} must be a relative path inside the run's artifacts "
        "(no leading '/', no '..')"
    )
    if strict:
        raise InvalidInput(problem)
    fixed = sanitize_key(text if isinstance(text, str) else str(path))
    warn_once(f"artifact-path:{path!r:.200}", f"mlhooks: {problem}; stored under {fixed!r}")
    return fixed


def _inside(path: str) -> bool:
    return not (path.startswith(("/", "\\")) or ".." in path.split("/") or "\\" in path)


def check_run_id(run_id: object) -> str:
    """``run_id`` if it can name a run in every store (letters, digits, ``_`` and
    ``-``, at most 256, not starting with ``_`` or ``-``); ValueError otherwise."""
    if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id):
        return run_id
    raise InvalidInput(
        f"run_id {run_id!r:.200} must be 1 to 256 letters, digits, '_' or '-', starting "
        "with a letter or digit"
    )


def flatten(params: Mapping[str, Any], *, prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested dicts flattened into ``outer/inner`` keys (for hyper-parameter trees)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=name, sep=sep))
        else:
            flat[name] = value
    return flat
