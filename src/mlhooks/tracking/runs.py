"""Runs: the per-thread stack of active runs, nesting, and how runs end.

``start_run`` works as a plain call and as a context manager; leaving the ``with``
block ends the run FINISHED, FAILED (an exception) or KILLED (Ctrl-C) and lets the
exception go on unchanged. Runs mlhooks opens for a fit are *managed*: mlhooks ends
them. A user's run is only ever ended by the user (or at interpreter exit).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from mlhooks.backends.base import Backend
from mlhooks.capture import context, system_metrics
from mlhooks.core import settings, validation
from mlhooks.core.config import current_config
from mlhooks.core.errors import (
    notice_once,
    report_internal_error,
    setting_or_default,
    warn_once,
)
from mlhooks.core.host import host
from mlhooks.core.shutdown import (
    Stage,
    at_exit,
    ending,
    going_on,
    in_forked_child,
    watch_ending,
)
from mlhooks.core.types import RunInfo, RunStatus, now_ms
from mlhooks.delivery import selection
from mlhooks.delivery.lanes import Lane
from mlhooks.delivery.recorder import recorder

thread_local = threading.local()
"""Per-thread state: ``.stack`` is the list of active runs, innermost last."""
_open: dict[str, RunInfo] = {}
"""Every run not yet ended, on any thread (ended at interpreter exit)."""
_logged_params: dict[str, dict[str, str]] = {}
_owner_stacks: dict[str, list[RunInfo]] = {}
"""The run stack of the thread that started each open run (end_run may come from
another thread)."""
_open_lock = threading.Lock()
_exiting = False
"""Set once the exit sequence ends the open runs."""
_owner_pids: dict[str, int] = {}
"""The process that started each run: only it ends the run (a forked child never does)."""


_main_stack: list[RunInfo] = []
"""The run stack of the main thread: threads with no run of their own log into its top."""


def _stack() -> list[RunInfo]:
    stack: list[RunInfo] | None = getattr(thread_local, "stack", None)
    if stack is None:
        is_main = threading.current_thread() is threading.main_thread()
        stack = thread_local.stack = _main_stack if is_main else []
    return stack


def run_of_main_thread() -> RunInfo | None:
    """The main thread's active run, when this is another thread with no run of its
    own: what its manual logging goes into, and what its fits become children of."""
    own = getattr(thread_local, "stack", None)
    if own or threading.current_thread() is threading.main_thread():
        return None
    return _main_stack[-1] if _main_stack else None


def active_run() -> RunInfo | None:
    """The innermost run active on this thread, or None."""
    stack = getattr(thread_local, "stack", None)
    return stack[-1] if stack else None


_adopted: set[str] = set()


def current_run() -> RunInfo | None:
    """The run tracking goes into: this thread's innermost mlhooks run, else (in
    another thread) the main thread's, else a run opened outside mlhooks that a plugin
    offers (``find_active_run``), else None."""
    stack = _stack()
    if stack:
        return stack[-1]
    going_on()
    shared = run_of_main_thread()
    if shared is not None:
        return shared
    host.load()
    try:
        outside: object = host.pm.hook.find_active_run()
    except Exception as error:  # noqa: BLE001 - a plugin's bug must not stop training
        report_internal_error("find_active_run", error)
        return None
    if outside is not None and not isinstance(outside, RunInfo):
        warn_once(
            "find_active_run-type",
            f"mlhooks: a plugin's find_active_run returned {type(outside).__name__} "
            f"{outside!r:.80}, not a RunInfo; it is ignored",
        )
        return None
    if outside is not None and outside.run_id not in _adopted:
        _adopt(outside)
    return outside


def _adopt(info: RunInfo) -> None:
    """Start tracking a run someone else opened (and will end)."""
    with _open_lock:
        if info.run_id in _adopted:
            return
        _adopted.add(info.run_id)
        _logged_params[info.run_id] = {}
    recorder.bind(info, selection.resolve(_autolog_backends()))
    host.emit("on_run_start", info)
    # MLflow samples system metrics of its own runs itself (mlflow.start_run(
    # log_system_metrics=True)); an adopted run only gets the context.
    _begin_context(info, None)


class ActiveRun:
    """A started run. Use it as a context manager to end it when the block ends."""

    def __init__(self, info: RunInfo) -> None:
        self.info = info

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_run(RunStatus.for_exception(exc), run=self.info)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.info.name!r} {self.info.run_id} {self.info.status.value}>"


def _default_name() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def start_run(
    name: str | None = None,
    *,
    experiment: str | None = None,
    run_id: str | None = None,
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    backends: Iterable[str | Backend] | str | Backend | None = None,
    log_context: bool | str | Iterable[str] | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run named ``name`` and make it the active run of this thread.

    ``experiment`` groups runs (MLflow's experiment name; ``MLHOOKS_EXPERIMENT`` or
    the backend's default when None). With a run already active, pass
    ``nested=True`` to start a child run of it (a hyper-parameter search candidate,
    say); otherwise this raises ValueError. A child run writes where its parent does
    unless ``backends`` says otherwise.

    ``run_id`` continues a run stored earlier (a training resumed from a checkpoint
    that named its run), as MLflow's ``start_run(run_id=...)`` does: backends append
    to it instead of creating a new one.

    ``log_context`` says which parts of the run context to capture (git, entry point,
    platform, versions, ...; see :mod:`mlhooks.capture.context`): True (all, the
    default), False, or part names. ``log_system_metrics`` samples CPU, memory, disk,
    network (and GPU) as ``system/*`` metrics while the run is active (default off;
    needs ``mlhooks[system]``). Both default to ``autolog()``'s setting, then to
    ``MLHOOKS_LOG_CONTEXT`` and ``MLHOOKS_LOG_SYSTEM_METRICS``.

    Use it as a context manager to end the run when the block ends (FAILED on an
    exception, KILLED on Ctrl-C), or call :func:`end_run`.
    """
    return open_run(
        name,
        experiment=experiment,
        run_id=run_id,
        description=description,
        tags=tags,
        nested=nested,
        backends=backends,
        log_context=log_context,
        log_system_metrics=log_system_metrics,
    )


def open_run(
    name: str | None = None,
    *,
    experiment: str | None = None,
    run_id: str | None = None,
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    backends: Iterable[str | Backend] | str | Backend | None = None,
    log_context: bool | str | Iterable[str] | None = None,
    log_system_metrics: bool | None = None,
    managed: bool = False,
    parent: RunInfo | None = None,
    activate: bool = True,
) -> ActiveRun:
    """:func:`start_run` with the options only integrations use (the plugin API).

    ``managed`` marks a run mlhooks opened for a fit: it ends when the fit does, and
    its tag keys are sanitized instead of refused. ``parent`` names the parent run
    explicitly (any open run, on any thread). With ``activate=False`` the run does
    not become this thread's active run: log into it through a
    :class:`~mlhooks.plugin.FitSession` given ``run=``, and end it with
    ``end_run(run=...)``. Integrations use both to add child runs (search candidates)
    or long-lived runs (a ``partial_fit`` loop) without changing where the user's own
    logging goes.
    """
    if parent is None:
        parent = current_run()
        if parent is not None and parent is run_of_main_thread() and not nested:
            parent = None  # another thread's run: this thread starts one of its own
        if parent is not None and not nested and activate:
            raise ValueError(
                f"run {parent.name!r} ({parent.run_id}) is already active on this thread; "
                "end it first, or pass nested=True to start a child run"
            )
        if not nested:
            parent = None
    if name is not None and not isinstance(name, str):
        raise ValueError(f"run name must be a string, not {type(name).__name__}")
    parts = context.resolve_parts(_autolog_option("log_context", log_context))
    sample = system_metrics.wanted(_autolog_option("log_system_metrics", log_system_metrics))
    clean_tags = validation.clean_entries(tags or {}, "tag", strict=not managed)
    if run_id is not None:
        validation.check_run_id(run_id)
    if backends is None and parent is not None and recorder.lanes_of(parent.run_id):
        targets = [lane.backend for lane in recorder.lanes_of(parent.run_id)]
    else:
        targets = selection.resolve(backends if backends is not None else _autolog_backends())
    if run_id is not None and run_id in _open:
        raise ValueError(f"run {run_id} is still open; it cannot be started again")
    info = RunInfo(
        run_id=run_id or uuid.uuid4().hex,
        name=name or _default_name(),
        experiment=experiment or (parent.experiment if parent else _default_experiment()),
        parent_id=parent.run_id if parent is not None else None,
        description=description,
        tags=clean_tags,
        managed=managed,
        new=run_id is None,
    )
    recorder.bind(info, targets)
    if activate:
        _stack().append(info)
        _owner_stacks[info.run_id] = _stack()
    _owner_pids[info.run_id] = os.getpid()
    watch_ending()
    going_on()
    with _open_lock:
        _open[info.run_id] = info
        _logged_params[info.run_id] = {}
    host.emit("on_run_start", info)
    _begin_context(info, parts)
    if sample and parent is None:  # a nested run is covered by its parent's sampler
        system_metrics.start(info)
    return ActiveRun(info)


def _begin_context(info: RunInfo, parts: frozenset[str] | None) -> None:
    try:
        if parts is None:
            parts = context.resolve_parts(_autolog_option("log_context", None))
        context.begin(info, parts)
    except Exception as error:  # noqa: BLE001 - context is never worth a failed run
        report_internal_error("run context capture", error)


def _autolog_option(name: str, given: Any) -> Any:
    """``given`` unless None, else what ``autolog()`` was told (None when it was not)."""
    if given is not None:
        return given
    config = current_config()
    return getattr(config, name, None) if config is not None else None


def _default_experiment() -> str | None:
    experiment: str | None = settings.get("MLHOOKS_EXPERIMENT")
    return experiment


def _autolog_backends() -> Any:
    config = current_config()
    return config.backends if config is not None else None


def end_run(
    status: RunStatus | str = RunStatus.FINISHED,
    *,
    run: RunInfo | None = None,
    flush_timeout: float | None = None,
) -> None:
    """End the active run of this thread (or ``run``) with ``status``.

    A user's run waits until what was logged to it is stored (at most
    ``flush_timeout`` seconds, ``MLHOOKS_FLUSH_TIMEOUT`` or 30 by default), but not
    for a backend known not to answer: what it did not take stays in the spool, to be
    stored when it answers again. A run mlhooks manages ends without waiting, so
    that training never does.
    Without an active run this does nothing.
    """
    status = RunStatus(status)
    own = _stack()
    info = run if run is not None else (own[-1] if own else None)
    if info is None or info.status is not RunStatus.RUNNING:
        return
    if _owner_pids.get(info.run_id, os.getpid()) != os.getpid():
        if info in own:  # a forked child leaves its copy of the parent's run
            own.remove(info)
        return
    _owner_pids.pop(info.run_id, None)
    if not _exiting:
        going_on()
    stack = _owner_stacks.pop(info.run_id, own)  # the stack of the thread that started it
    with _open_lock:  # children on a stack, and those started with activate=False
        children = [r for r in (*stack, *_open.values()) if r.parent_id == info.run_id]
    for child in children:
        end_run(status, run=child, flush_timeout=0)
    if info in stack:
        stack.remove(info)
    info.status = status
    info.end_time = now_ms()
    with _open_lock:
        _open.pop(info.run_id, None)
        _logged_params.pop(info.run_id, None)
    lanes = recorder.lanes_of(info.run_id)
    system_metrics.stop(info)
    context.finish(info, wait=not info.managed)  # a managed run's end never waits
    host.emit("on_run_end", info, status)
    timeout = flush_timeout if flush_timeout is not None else _flush_timeout()
    if not info.managed and timeout > 0:
        _wait_until_stored(info, lanes, timeout)


def _wait_until_stored(info: RunInfo, lanes: Iterable[Lane], timeout: float) -> None:
    """Wait until what was logged to ``info`` is stored, at most ``timeout`` seconds,
    but not for a backend known not to answer: its lane spools (see
    :func:`_not_waiting_for`). When the run ends before its data is stored, the user is
    told how long it waited and why it stopped."""
    lanes = list(lanes)
    down = [lane for lane in lanes if lane.unreachable_since is not None]
    up = [lane for lane in lanes if lane not in down]
    for lane in down:
        lane.flush(0, unless_unreachable=True)  # no wait: the writer spools what it holds
    started = time.monotonic()
    timed_out: list[str] = []
    """What the wait ran out of time for."""
    failed: list[str] = []
    """Backends that answered the flush: they could neither store nor spool all of it."""
    if up or not down:  # wait, unless every backend of the run is known unreachable
        deadline = started + timeout
        if not recorder.wait_released(info.run_id, timeout):  # background work on it
            timed_out.append("the run's background work (charts, tables)")
        for lane in up:
            left = max(0.0, deadline - time.monotonic())
            stored = lane.flush(left, unless_unreachable=True)
            if lane.unreachable_since is not None:
                down.append(lane)  # found unreachable while we waited: wait no longer
            elif not stored:
                name = f"backend {lane.backend.name!r}"
                (timed_out if time.monotonic() >= deadline else failed).append(name)
    if down:
        _not_waiting_for(info, down)
    if timed_out or failed:
        _not_stored(info, time.monotonic() - started, timeout, timed_out, failed)


def _not_stored(
    info: RunInfo, waited: float, timeout: float, timed_out: list[str], failed: list[str]
) -> None:
    """Tell once that run ``info`` ended before its data was stored: the real wait, and
    whether the timeout ran out or a backend could neither store nor spool the data."""
    reasons = []
    if timed_out:
        reasons.append(
            f"it waited {waited:.1f}s, the flush timeout of {timeout:g}s, for "
            + ", ".join(timed_out)
        )
    if failed:
        reasons.append(
            f"after {waited:.1f}s, {', '.join(failed)} could neither store nor spool all "
            "of it (see the warning about it)"
        )
    warn_once(
        f"slow-end:{info.run_id}",
        f"mlhooks: run {info.name!r} ended before its data was stored: "
        + "; ".join(reasons)
        + "; what is not stored is kept and written in the background",
        stacklevel=4,
    )


def _not_waiting_for(info: RunInfo, lanes: list[Lane]) -> None:
    """Tell once per outage that runs end without waiting for a backend that is down."""
    for lane in lanes:
        backend, since = lane.backend, lane.unreachable_since
        when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
        notice_once(
            f"end-while-down:{id(lane)}:{since}",
            f"mlhooks: run {info.name!r} ended without waiting for backend {backend.name!r} "
            f"({backend.describe()}), which is unreachable{when}: what was logged is kept "
            f"in the spool ({lane.spool_dir}) and stored once the backend answers again, "
            "or by `mlhooks sync`; runs that end meanwhile do not wait either",
        )


def _flush_timeout() -> float:
    timeout: float = setting_or_default("MLHOOKS_FLUSH_TIMEOUT")
    return timeout


def new_params(run: RunInfo, params: Mapping[str, str], *, strict: bool) -> dict[str, str]:
    """The params of ``params`` not yet logged to ``run``. A param logged again with a
    different value raises ValueError (``strict``) or is skipped with a warning."""
    logged = _logged_params.setdefault(run.run_id, {})
    fresh: dict[str, str] = {}
    for key, value in params.items():
        old = logged.get(key)
        if old is None:
            logged[key] = fresh[key] = value
        elif old != value:
            problem = (
                f"param {key!r} of run {run.name!r} was logged as {old!r} and cannot change "
                f"to {value!r}; a run keeps one value per param (log a metric or a new "
                "param name instead)"
            )
            if strict:
                raise validation.InvalidInput(problem)
            warn_once(f"param-change:{run.run_id}:{key}", f"mlhooks: {problem}; kept {old!r}")
    return fresh


def _end_open_runs_at_exit() -> None:
    """Runs still open at exit end as the process does: FINISHED, FAILED (an uncaught
    exception, ``sys.exit(n)`` with ``n`` not 0) or KILLED (Ctrl-C); a fit's run that
    is still open was cut off, so it ends KILLED unless the process failed."""
    global _exiting
    _exiting = True
    status = RunStatus.for_exception(ending())
    with _open_lock:
        remaining = sorted(_open.values(), key=lambda r: r.start_time, reverse=True)
    for info in remaining:
        cut_off = info.managed and status is RunStatus.FINISHED
        end_run(RunStatus.KILLED if cut_off else status, run=info, flush_timeout=0)


def _forget_parent_runs_in_child() -> None:
    # A forked child may log into the runs it inherited, but they are its parent's to
    # end: the child's exit must not end them.
    _open.clear()  # no lock: another thread of the parent may have held it at the fork


at_exit(_end_open_runs_at_exit, Stage.RUNS)
in_forked_child(_forget_parent_runs_in_child, Stage.RUNS)
