"""Checks on what users and integrations log, with two behaviours.

A user calling ``mlhooks.log_*`` with bad input gets a ``ValueError`` naming the key
and the reason. Autologging must never stop training, so there the same problem is
*sanitized* (a usable key or value is made from it) with one warning.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from mlhooks.core.errors import warn_once

MAX_KEY_LENGTH = 250
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f]")

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
    return None


def sanitize_key(key: object) -> str:
    """A usable key made from ``key``: stringified, control characters replaced,
    truncated to the maximum length."""
    text = key if isinstance(key, str) else str(key)
    text = _BAD_KEY_CHARS.sub("_", text).strip().lstrip("/")
    text = "/".join("_" if part == ".." else part for part in text.split("/"))
    return text[:MAX_KEY_LENGTH] or "_"


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
    if isinstance(value, (numbers.Real, bool)) or _is_numpy_scalar(value):
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


def _is_numpy_scalar(value: object) -> bool:
    module = type(value).__module__
    return module == "numpy" and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0


def step_value(step: object, *, strict: bool) -> int:
    """``step`` as an int. Non-integers raise (``strict``) or become 0 with a warning."""
    if type(step) is int:
        return step
    if isinstance(step, numbers.Integral):
        return int(step)
    if _is_numpy_scalar(step) and float(step).is_integer():  # type: ignore[arg-type]
        return int(float(step))  # type: ignore[arg-type]
    if strict:
        raise InvalidInput(f"step must be an integer, not {type(step).__name__} {step!r:.80}")
    warn_once("step-value", f"mlhooks: step {step!r:.80} is not an integer; using 0")
    return 0


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
