"""W&B's service process in the life of this process: started when a W&B backend is
built, ended at exit only after mlhooks stored everything.

W&B ends its service in an ``atexit`` hook that it registers when the service starts.
``atexit`` runs hooks last-registered first, and mlhooks' exit sequence (end the runs
still open, store what is queued) was registered when mlhooks was imported, before:
left alone, W&B would stop its service first, and the last operations of every run
(its end included) would find it gone. A short script's runs are often delivered at
exit only, so the hook is taken over as soon as a W&B backend is built (on the
caller's thread, before any run): unregistered, and run by the last W&B backend to
close at exit (``release``), within a time limit. In a process that did not start the
service (a forked child talks to its parent's), there is nothing to take over.

Taking the hook over reaches into the SDK (the connection's ``_cleanup`` and the hook
it unregisters; checked with wandb 0.31). If a later SDK moves them, W&B's own hook
stays, and one notice says what that costs.
"""

from __future__ import annotations

import atexit
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any

from mlhooks.plugin import in_forked_child, notice_once, warn_background


class Service:
    """Starts W&B's service once per process and ends it after its last user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._setup: Any = None
        self._teardown: Callable[[], Any] | None = None
        self._users: weakref.WeakSet[Any] = weakref.WeakSet()
        """Backends built and not closed yet (one nobody holds on to is gone too)."""
        self.exiting = False
        """Set by an ``atexit`` hook that runs before mlhooks' exit sequence."""

    def ensure(self, user: Any) -> Any:
        """W&B's setup for this process, its service started and its exit hook taken
        over; ``user`` (a backend) is counted until it is released."""
        import wandb

        with self._lock:
            self._users.add(user)
            # Starts the service, or connects to a parent's; a new one after a fork or
            # after the user's wandb.teardown().
            setup = wandb.setup()
            if setup is not self._setup and setup.settings.mode != "disabled":
                self._setup = setup
                self._teardown = _take_exit_hook(setup)
        return setup

    def release(self, user: Any, timeout: float) -> None:
        """``user`` is closed. At exit, the last one ends W&B's service, which finishes
        the W&B runs nobody finished (runs mlhooks did not end, and the user's own), as
        W&B's exit hook would have; it may take ``timeout`` seconds."""
        with self._lock:
            self._users.discard(user)
            if not self.exiting or self._users or self._teardown is None:
                return
            teardown, self._teardown = self._teardown, None
        run_bounded(teardown, timeout, "ending W&B's service at exit")

    def mark_exiting(self) -> None:
        self.exiting = True

    def reset_in_child(self) -> None:
        """A forked child: the service and its exit hook belong to the parent."""
        self._lock = threading.Lock()
        self._setup = None
        self._teardown = None
        self._users = weakref.WeakSet()


def _take_exit_hook(setup: Any) -> Callable[[], Any] | None:
    """Unregister W&B's ``atexit`` hook that ends the service; return it (or None when
    this process does not own the service)."""
    connection = setup.ensure_service()
    if not hasattr(connection, "_cleanup"):
        _notice_unchanged()
        return None
    cleanup = connection._cleanup
    if cleanup is None:  # connected to another process's service: nothing to end
        return None
    hook = inspect.getclosurevars(cleanup).nonlocals.get("teardown_atexit")
    if not callable(hook):
        _notice_unchanged()
        return None
    cleanup()  # atexit.unregister(hook)
    return hook  # type: ignore[no-any-return]


def _notice_unchanged() -> None:
    notice_once(
        "wandb-exit-hook",
        "mlhooks: this version of wandb ends its service in its own exit hook, before "
        "mlhooks stores the last data of runs still open at exit: end your runs (or call "
        "mlhooks.flush()) before the program ends so that W&B gets all of it.",
    )


def run_bounded(step: Callable[[], Any], timeout: float, what: str) -> bool:
    """Run ``step`` on a daemon thread and wait at most ``timeout`` seconds: True when
    it ended in time. Its errors (``SystemExit`` included) are reported, never raised."""

    def target() -> None:
        try:
            step()
        except BaseException as error:  # noqa: BLE001 - at exit, nothing may escape
            warn_background(
                f"wandb:{what}:{type(error).__name__}",
                f"mlhooks: {what} failed ({type(error).__name__}: {error})",
            )

    thread = threading.Thread(target=target, name="mlhooks-wandb-service", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        warn_background(
            f"wandb:{what}:timeout",
            f"mlhooks: {what} took more than {timeout:g} s; W&B keeps what it did not "
            "upload on disk (`wandb sync` uploads it)",
        )
        return False
    return True


service = Service()
atexit.register(service.mark_exiting)  # after mlhooks' own hook: so it runs before it
in_forked_child(service.reset_in_child)
