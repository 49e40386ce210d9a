"""One ordered sequence at interpreter exit, and one after a fork in the child.

Modules of every layer add their part with :func:`at_exit` and :func:`in_forked_child`
under a :class:`Stage`; the stages run in their order, whatever the import order of
the modules. There is one ``atexit`` handler and one at-fork handler, registered when
this module is first imported. Plugins add theirs through :mod:`mlhooks.plugin`
(stage ``INTEGRATIONS``, first).

At exit: integrations finish what they keep open (a ``partial_fit`` loop's run), the
background tasks of fits finish, open runs end, and the lanes store what is queued
within ``MLHOOKS_EXIT_TIMEOUT``. In a forked child, the same parts forget the
parent's threads and runs, in the same order. A worker that multiprocessing forked
ends by ``os._exit`` without atexit: its exit sequence runs when its work ends.

:func:`ending` tells the exit steps how the process ends, so that runs still open end
honestly: FAILED after an uncaught exception or ``sys.exit(n)`` with ``n`` not 0,
KILLED after Ctrl-C. It needs :func:`watch_ending`, which chains ``sys.excepthook``
and wraps ``sys.exit`` (both keep doing what they did); runs call it when the first
one starts. A bare ``raise SystemExit(n)`` is not seen (nothing reports it to an
exit handler): the runs then end FINISHED. A ``sys.exit`` that someone caught is
forgotten once a run starts or ends or a fit looks for its run after it
(:func:`going_on`); one in a thread other than the main thread ends only that thread,
and is not recorded; in a notebook ``sys.exit`` is not watched at all.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
from types import TracebackType
from typing import Any, NoReturn

from mlhooks.core.errors import report_background_error


class Stage(IntEnum):
    """The order of the sequence; lower runs first."""

    INTEGRATIONS = 10
    """Plugins close what they hold open (through :mod:`mlhooks.plugin`)."""
    ACTIVITY = 20
    """Process-wide bookkeeping (which fits run)."""
    TASKS = 30
    """Background work of fits (charts, tables)."""
    RUNS = 40
    """Runs still open end."""
    RECORDER = 50
    """Holds on runs; the recorder's per-run state."""
    LANES = 60
    """Writers store what is queued, then stop."""
    FILES = 70
    """Folders mlhooks made for its own files, left empty, go."""


_exit_steps: list[tuple[Stage, int, Callable[[], None]]] = []
_fork_steps: list[tuple[Stage, int, Callable[[], None]]] = []
_lock = threading.Lock()


def at_exit(step: Callable[[], None], stage: Stage = Stage.INTEGRATIONS) -> None:
    """Run ``step`` at interpreter exit, in ``stage`` (steps of one stage in the order
    they were added). Adding the same step twice has no effect."""
    _add(_exit_steps, stage, step)


def in_forked_child(step: Callable[[], None], stage: Stage = Stage.INTEGRATIONS) -> None:
    """Run ``step`` in a forked child right after the fork, in ``stage``."""
    _add(_fork_steps, stage, step)


def _add(
    steps: list[tuple[Stage, int, Callable[[], None]]], stage: Stage, step: Callable[[], None]
) -> None:
    with _lock:
        if any(known is step for _, _, known in steps):
            return
        steps.append((stage, len(steps), step))
        steps.sort(key=lambda entry: (entry[0], entry[1]))


_ending: BaseException | None = None
_watching = False


def ending() -> BaseException | None:
    """How the process is ending, as far as it is known: the uncaught exception, a
    ``SystemExit`` from ``sys.exit(code)``, or None (a normal end)."""
    return _ending


def going_on() -> None:
    """The process went on after a ``sys.exit`` someone caught: forget it."""
    global _ending
    if isinstance(_ending, SystemExit):
        _ending = None


def watch_ending() -> None:
    """Start recording uncaught exceptions and ``sys.exit`` calls (once)."""
    global _watching
    with _lock:
        if _watching:
            return
        _watching = True
        previous_hook = sys.excepthook
        previous_exit = sys.exit

    def excepthook(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        global _ending
        _ending = error
        previous_hook(kind, error, tb)

    def exit(code: Any = None) -> NoReturn:
        global _ending
        if threading.current_thread() is threading.main_thread():  # a thread's ends it
            _ending = SystemExit(code)
        previous_exit(code)
        raise SystemExit(code)  # only if the previous exit returned

    exit.__doc__ = previous_exit.__doc__
    sys.excepthook = excepthook
    if not _interactive():  # in a notebook, sys.exit does not end the kernel
        sys.exit = exit


def _interactive() -> bool:
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return callable(get_ipython) and get_ipython() is not None


def _run(steps: list[tuple[Stage, int, Callable[[], None]]], when: str) -> None:
    for stage, _, step in list(steps):
        try:
            step()
        except Exception as error:  # noqa: BLE001 - one part must not stop the others
            name = getattr(step, "__qualname__", repr(step))
            report_background_error(f"{when} ({stage.name.lower()}: {name})", error)


_exited = False


def _run_at_exit() -> None:
    global _exited
    if _exited:  # once: at exit, or already when a multiprocessing worker's work ended
        return
    _exited = True
    _run(_exit_steps, "exit")


_forked = False


def is_forked_child() -> bool:
    """Whether this process was forked from one that had mlhooks imported (its runs
    may have been started by the parent, whose writer may not have stored them yet)."""
    return _forked


def _run_in_child() -> None:
    global _lock, _exited, _forked
    _lock = threading.Lock()  # another thread may have held it at the fork
    _exited = False
    _forked = True
    _run(_fork_steps, "fork")
    _end_with_multiprocessing_worker()


class _WorkerEnd:
    """The key of mlhooks' after-fork step in multiprocessing's registry (it holds its
    keys weakly)."""

    armed_in: int | None = None
    """The process whose worker end is armed."""


_WORKER_END = _WorkerEnd()


def _end_with_multiprocessing_worker() -> None:
    """A process that multiprocessing forks (``fork``, ``forkserver``) ends by
    ``os._exit`` once its work is done, which skips atexit: have the exit sequence run
    when its work ends, as multiprocessing's own finalizers do. multiprocessing clears
    those after the fork and then calls its after-fork steps, so the finalizer is
    registered from one. (A worker killed by a signal, such as a ``Pool`` left by its
    ``with`` block, still leaves its journal for the next process.)"""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(_WORKER_END, _arm_worker_end)


def _arm_worker_end(key: _WorkerEnd) -> None:
    if key.armed_in == os.getpid():
        return  # registered by the parent and again after the fork: once is enough
    key.armed_in = os.getpid()
    from multiprocessing import util

    util.Finalize(None, _at_worker_end, exitpriority=10)


def _at_worker_end() -> None:
    """The worker's work ended: with the exception that ended it, if any (its runs
    end as a process's would), then the exit sequence."""
    global _ending
    error = sys.exc_info()[1]
    if error is not None:
        _ending = error
    _run_at_exit()


atexit.register(_run_at_exit)
os.register_at_fork(after_in_child=_run_in_child)
_end_with_multiprocessing_worker()  # in a process it started, multiprocessing came first
