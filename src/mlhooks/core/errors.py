"""How mlhooks reports its own problems: one warning per site, never an exception.

Tracking must never break training. Errors raised by mlhooks' own code (a patch, a
hook, a backend) become one :class:`MlhooksWarning` per site, and training goes on.
With ``MLHOOKS_STRICT=1`` they are re-raised instead, so that tests catch our bugs.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

from mlhooks.core import settings

__all__ = [
    "MlhooksWarning",
    "is_strict",
    "notice_once",
    "report_background_error",
    "report_internal_error",
    "warn_background",
    "warn_once",
]

log = logging.getLogger("mlhooks")


class MlhooksWarning(UserWarning):
    """A problem in tracking that did not stop training."""


_warned: set[str] = set()
_lock = threading.Lock()
_silent = False
_relay: Callable[[str, str, str], None] | None = None


def set_relay(relay: Callable[[str, str, str], None] | None) -> None:
    """Hand background warnings, notices and errors to ``relay(kind, key, message)``
    (kind ``warn``, ``notice`` or ``error``) instead of showing them here: the writer
    service relays them to its training process, which shows each once, under its own
    warning filters and strict mode."""
    global _relay
    _relay = relay


def set_silent(silent: bool) -> None:
    """Mute mlhooks' warnings (``autolog(silent=True)``); errors raised to users stay."""
    global _silent
    _silent = silent


def is_strict() -> bool:
    """True when ``MLHOOKS_STRICT`` asks for our own errors to be raised."""
    try:
        return bool(settings.get("MLHOOKS_STRICT"))
    except ValueError:
        return False  # a malformed value must not turn warnings into exceptions


def setting_or_default(name: str) -> Any:
    """The ``MLHOOKS_*`` setting ``name``; a malformed value gives one warning and the
    default (for code that must not fail, such as the exit sequence)."""
    try:
        return settings.get(name)
    except ValueError as error:
        default = settings.default(name)
        warn_once(f"setting:{name}", f"mlhooks: {error}; using {default!r}")
        return default


def warn_once(key: str, message: str, *, stacklevel: int = 3) -> bool:
    """Warn with ``message`` the first time ``key`` is seen; True if it warned."""
    with _lock:
        if key in _warned or _silent:
            return False
        _warned.add(key)
    try:
        warnings.warn(message, MlhooksWarning, stacklevel=stacklevel)
    except Warning:  # warnings turned into errors (-W error): still never break training
        if is_strict():
            raise
        log.warning(message)
    return True


def report_internal_error(site: str, error: BaseException, *, reraise: bool = True) -> None:
    """Report a failure of mlhooks' own code at ``site``.

    Strict mode re-raises it when ``reraise`` is allowed (that is, on the caller's
    thread); otherwise the first failure per site and error type becomes a warning.
    """
    if reraise and is_strict():
        raise error
    warn_once(
        f"{site}:{type(error).__name__}",
        f"mlhooks: {site} failed and was skipped; training is not affected "
        f"({type(error).__name__}: {error})",
    )


def reset_warnings() -> None:
    """Forget which warnings and notices were given (for tests)."""
    with _lock:
        _warned.clear()
        _noticed.clear()


_noticed: set[str] = set()


def notice_once(key: str, message: str) -> bool:
    """Tell the user ``message`` the first time ``key`` is seen; True if it told.

    A notice is information, not a problem: something a backend does not keep, say.
    It goes to the ``mlhooks`` logger at WARNING level (shown on stderr when logging
    is not configured), never as a warning that ``-W error`` or strict mode would turn
    into an exception, and not at all when mlhooks is silent.
    """
    relay = _relay
    if relay is not None:
        relay("notice", key, message)
        return True
    return _notice_here(key, message)


def _notice_here(key: str, message: str) -> bool:
    with _lock:
        if key in _noticed or _silent:
            return False
        _noticed.add(key)
    log.warning(message)
    return True


def warn_background(key: str, message: str) -> None:
    """:func:`warn_once` for mlhooks' own threads: with warnings turned into errors
    (``-W error``) the warning is logged instead, so that the thread lives on."""
    relay = _relay
    if relay is not None:
        relay("warn", key, message)
        return
    _warn_here(key, message, stacklevel=4)


def _warn_here(key: str, message: str, stacklevel: int = 3) -> None:
    """:func:`warn_once` (``stacklevel`` as it takes it), logged instead under a
    filter that turns warnings into errors."""
    try:
        warn_once(key, message, stacklevel=stacklevel)
    except Exception:  # noqa: BLE001 - a warning filter set to "error"
        log.warning(message)


background_failures: list[str] = []
"""In strict mode, the failures of mlhooks' own threads (tests check it is empty)."""


def relayed_error(key: str, message: str) -> None:
    """An error of the writer service's threads, relayed: reported here as
    :func:`report_background_error` reports one of this process's threads."""
    if is_strict():
        background_failures.append(message)
    _warn_here(key, message)


def show_here(kind: str, key: str, message: str) -> None:
    """What a relay hands over (``kind`` ``warn``, ``notice`` or ``error``), shown in
    this process whatever the relay: by the training process it was relayed to, or by
    the writer service once the process it would go to is gone."""
    if kind == "notice":
        _notice_here(key, message)
    elif kind == "error":
        relayed_error(key, message)
    else:
        _warn_here(key, message)


def report_background_error(site: str, error: BaseException) -> None:
    """:func:`report_internal_error` for mlhooks' own threads: never raises. In strict
    mode the failure is also kept in :data:`background_failures`."""
    key = f"{site}:{type(error).__name__}"
    message = (
        f"mlhooks: {site} failed and was skipped; training is not affected "
        f"({type(error).__name__}: {error})"
    )
    relay = _relay
    if relay is not None:
        relay("error", key, message)
        return
    if is_strict():
        background_failures.append(f"{site}: {type(error).__name__}: {error}")
    warn_background(key, message)
