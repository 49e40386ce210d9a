"""How the MLflow backend talks to a tracking server: within bounds of its own, and
with a cheap question whether the server answers at all.

MLflow's client retries a failed request for minutes before its caller hears of it
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by default, with a backoff factor of 2: about
four minutes for a server that refuses connections; ``MLFLOW_HTTP_REQUEST_TIMEOUT``,
120 s, for one that does not answer). It reads these settings from the environment on
every request, for every caller in the process, so setting them would change the
user's own ``mlflow`` calls too. Its ``http_request`` takes them as arguments, though,
and leaves them to the environment only when its caller passes none (its REST store
and artifact repository pass none). So:

* :func:`bounded_requests` marks the requests of the current thread (mlhooks' writer)
  as mlhooks': they get no retries and backoff (the writer retries, then spools, and
  replays once the server answers) and a connect timeout of at most
  :data:`CONNECT_TIMEOUT` seconds; the read timeout stays MLflow's. A wrapper over
  ``http_request``, installed once where MLflow's REST client and HTTP artifact
  repository look it up, fills these in for such requests only; every other call
  passes through as it came.
* :func:`answers` asks a server's ``/health`` once, with a timeout of a couple of
  seconds, through MLflow's own ``http_request`` (so with the user's TLS settings and
  credentials). A server that showed lately that it is slow to answer gets longer
  (:func:`health_timeout`): a team's server busy with many writers, on a busy machine,
  answers everything late, and is not down. Taken for down, every writer would spool
  and replay, and a process ending meanwhile would leave its data to ``mlhooks sync``.
  A server that hangs is still found, later: within :data:`HEALTH_TIMEOUT_MAX`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import mlflow_api

CONNECT_TIMEOUT = 5.0
"""Seconds mlhooks' requests wait for a connection (MLflow's timeout if shorter)."""
HEALTH_TIMEOUT = 2.0
"""Seconds :func:`answers` waits for ``/health`` at least."""
HEALTH_TIMEOUT_FIRST = 5.0
"""Seconds :func:`answers` waits for a server this process never heard from (many
processes starting at once keep a server busy)."""
HEALTH_TIMEOUT_MAX = 10.0
"""Seconds :func:`answers` waits for ``/health`` at most, however slow it was lately."""
HEALTH_PATIENCE = 3.0
"""How many times its slowest recent answer to ``/health`` a server gets."""
HEALTH_MEMORY = 60.0
"""Seconds a slow answer counts for."""

_needed: dict[str, deque[tuple[float, float]]] = {}
"""Per server: (``time.monotonic()``, seconds its answers showed it may need) of its
recent answers: to ``/health``, and to mlhooks' own requests."""

_PATCHED_MODULES = ("mlflow.utils.rest_utils", "mlflow.store.artifact.http_artifact_repo")
_BOUNDED = ("max_retries", "backoff_factor", "backoff_jitter", "timeout")
_MARK = "__mlhooks_bounded__"

_thread = threading.local()
_install_lock = threading.Lock()
_installed: bool | None = None
"""None until the wrapper was installed (True) or found impossible (False)."""


def is_served(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a tracking server (not a database or Databricks)."""
    return tracking_uri.startswith(("http://", "https://"))


@contextmanager
def bounded_requests() -> Iterator[None]:
    """Within this block, this thread's requests to MLflow servers are mlhooks': no
    retries, a short connect timeout (see the module docstring)."""
    if not _install():
        yield  # an MLflow whose http_request takes no such arguments: its own bounds
        return
    outer = getattr(_thread, "bounded", False)
    _thread.bounded = True
    try:
        yield
    finally:
        _thread.bounded = outer


def answers(tracking_uri: str, timeout: float | None = None) -> bool:
    """Whether the server at ``tracking_uri`` answers ``/health`` within ``timeout``
    seconds (default :func:`health_timeout`), once, with no retries. A server error
    (5xx, such as a proxy's 502 for a server behind it that is gone) counts as no
    answer."""
    mlflow_api.load()  # on one thread at a time (the watch asks beside the writer)
    from mlflow.utils import rest_utils

    http_request: Callable[..., Any] = rest_utils.http_request
    started = time.monotonic()
    try:
        response = http_request(
            _host_creds(tracking_uri),
            "/health",
            "GET",
            max_retries=0,
            backoff_factor=0,
            backoff_jitter=0.0,
            timeout=health_timeout(tracking_uri) if timeout is None else timeout,
            raise_on_status=False,
        )
    except (importlib.import_module("mlflow.exceptions").MlflowException, OSError):
        return False
    if int(response.status_code) >= 500:
        return False
    _answered(tracking_uri, HEALTH_PATIENCE * (time.monotonic() - started))
    return True


def health_timeout(tracking_uri: str) -> float:
    """Seconds to wait for ``/health`` of ``tracking_uri``: what its answers of the last
    :data:`HEALTH_MEMORY` seconds showed it may need (:data:`HEALTH_PATIENCE` times its
    slowest ``/health``; as long as mlhooks' slowest request to it took), at least
    :data:`HEALTH_TIMEOUT` and at most :data:`HEALTH_TIMEOUT_MAX`;
    :data:`HEALTH_TIMEOUT_FIRST` for a server that never answered this process."""
    known = _needed.get(_server(tracking_uri))
    if known is None:
        return HEALTH_TIMEOUT_FIRST
    since = time.monotonic() - HEALTH_MEMORY
    needed = max((seconds for when, seconds in list(known) if when >= since), default=0.0)
    return min(HEALTH_TIMEOUT_MAX, max(HEALTH_TIMEOUT, needed))


def _answered(tracking_uri: str, needed: float) -> None:
    """The server at ``tracking_uri`` answered, showing it may need ``needed`` s."""
    known = _needed.setdefault(_server(tracking_uri), deque(maxlen=50))
    known.append((time.monotonic(), needed))


def _server(uri: str) -> str:
    return uri.rstrip("/")


def _host_creds(tracking_uri: str) -> Any:
    """MLflow's credentials and TLS settings for ``tracking_uri``, as its client uses."""
    get_creds: Callable[[str], Any]
    try:
        from mlflow.utils.credentials import get_default_host_creds as get_creds
    except ImportError:  # MLflow 2
        from mlflow.tracking._tracking_service.utils import (  # type: ignore[attr-defined,no-redef]
            _get_default_host_creds as get_creds,
        )
    return get_creds(tracking_uri)


def _limits() -> dict[str, Any]:
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

    setting: Callable[[], Any] = MLFLOW_HTTP_REQUEST_TIMEOUT.get
    read = float(setting())
    return {
        "max_retries": 0,
        "backoff_factor": 0,
        "backoff_jitter": 0.0,
        "timeout": (min(CONNECT_TIMEOUT, read), read),
    }


def _install() -> bool:
    """Put the wrapper over MLflow's ``http_request`` (once); False when this MLflow's
    function takes no retry and timeout arguments."""
    global _installed
    if _installed is not None:
        return _installed
    mlflow_api.load()
    with _install_lock:
        if _installed is None:
            modules = [importlib.import_module(name) for name in _PATCHED_MODULES]
            originals = [getattr(module, "http_request", None) for module in modules]
            _installed = all(callable(f) and _takes_limits(f) for f in originals)
            for module, original in zip(modules, originals, strict=True):
                if _installed and callable(original) and not getattr(original, _MARK, False):
                    setattr(module, "http_request", _bounding(original))  # noqa: B010
    return _installed


def _takes_limits(function: Callable[..., Any]) -> bool:
    if getattr(function, _MARK, False):
        return True
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return all(name in parameters for name in _BOUNDED)


def _bounding(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` that fills in mlhooks' limits for requests of a bounded thread
    when the caller left them unset; any other call passes through unchanged."""

    @functools.wraps(original)
    def http_request(*args: Any, **kwargs: Any) -> Any:
        if not (getattr(_thread, "bounded", False) and len(args) <= 3):
            return original(*args, **kwargs)
        for name, value in _limits().items():
            if kwargs.get(name) is None:
                kwargs[name] = value
        started = time.monotonic()
        response = original(*args, **kwargs)
        took = time.monotonic() - started
        host = getattr(args[0], "host", None) if args else None
        if isinstance(host, str) and took < HEALTH_TIMEOUT_MAX:  # longer: it hung
            _answered(host, took)  # how long this server takes to answer, lately
        return response

    setattr(http_request, _MARK, True)
    return http_request
