"""The training process's side of the writer service (see :mod:`.service`).

A lane whose backend runs in the service (``Backend.out_of_process`` with
``MLHOOKS_SERVICE`` on) only journals: its journal thread appends what the training
thread queued, and this client tells the service, over a socket pair, which journals to
deliver and when new records are there. The service answers flush requests once what
was asked is stored, and relays its warnings, which are shown here.

On first use, the client attaches to the service of its process tree when there is
one it may use (a forked child's or a worker's parent's; see :mod:`.service_tree`),
else starts one of its own, on a thread of its own (never on the training thread's
path), with this process's environment and ``sys.path``, listening for the processes
this one starts. If the service dies, the client warns once and attaches or starts
another, which goes on from each journal's cursor; if none can be started, or they
die again and again, the lanes deliver in this process instead (one warning), from
the cursor on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlhooks.core import activity
from mlhooks.core.errors import notice_once, relayed_error, setting_or_default, warn_background
from mlhooks.core.processes import is_running, is_writer_service
from mlhooks.core.shutdown import Stage, in_forked_child
from mlhooks.delivery import service_gate, service_tree, staging
from mlhooks.delivery.journal import mark_delivered_by
from mlhooks.delivery.service_wire import MODULE_NAME, encode, read_messages

if TYPE_CHECKING:
    from mlhooks.backends.base import Backend
    from mlhooks.delivery.lanes import Lane

log = logging.getLogger(__name__)

LAUNCH_WAIT = 10.0
"""Seconds the exit waits for the service to be started (or to say that it serves
this process, when it attached to another one's), if it did not yet."""
MAX_RESTARTS = 3
"""Deaths within :data:`RESTART_WINDOW` seconds after which lanes deliver in process."""
RESTART_WINDOW = 60.0


@dataclass
class _Attached:
    lane: Lane
    journal: Path
    down: bool = False
    unreachable_since: float | None = None
    ended: int | None = None
    """Where the journal ends, once this process said bye."""


@dataclass
class _Waiter:
    lane: Lane
    upto: int
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


class ServiceClient:
    """This process's connection to its writer service."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._attached: dict[str, _Attached] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._deaths: list[float] = []
        self.failed = False
        """True once the service was given up: lanes deliver in this process."""
        self.pid: int | None = None
        """The service's pid once it said it is ready."""
        self._ready = threading.Event()
        self._launched = threading.Event()
        """Set once the current service process was started, or the service this
        process attached to said it serves it (or neither could be)."""
        self.address: str | None = None
        """Where the processes this one starts find its service (None: nowhere)."""
        self.attached = False
        """True while the service is another process's (this one attached to it)."""
        self._hello_pending = False
        """True while an attached service has not said it serves this process."""
        self.inherited: str | None = None
        """In a forked child: the address of the parent's service."""
        self._refused: set[str] = set()
        """Addresses of services that would not serve this process."""
        self._warm: set[str] = set()
        """The backends whose libraries a service should import ahead of their journals."""
        self.warmed: set[str] = set()
        """The backends whose libraries the service imported ahead of their first
        journal (see :meth:`warm_up`)."""
        self._models: set[tuple[str, tuple[str, ...]]] = set()
        """The (flavor, modules) of the models this process's fits said they will
        report (see :meth:`expect_model`); each service started is told them."""
        self.warmed_models: dict[str, dict[str, list[str]]] = {}
        """By flavor, what the service made ready for such models ahead of them: the
        backends it prepared and the modules it then had imported (see
        :meth:`expect_model`)."""
        self._started_as: tuple[str, str, tuple[str, ...]] | None = None
        """This process's working directory, environment and ``sys.path`` when the
        current service was started or attached to."""
        self._page: tuple[int, mmap.mmap] | None = None
        """Where this process counts its fits for the services it starts (see
        :mod:`.service_gate`)."""
        self._now = False
        """True once asked to have the service start its backends at once."""

    # -- what lanes call ----------------------------------------------------------------

    def warm_up(self, backends: list[str]) -> None:
        """Start the service now, in the background (``autolog()`` calls this), and have
        it import what the ``backends`` (names) need while the script goes on: the
        first fit's points are stored sooner. A service started so, which this process
        has not used yet when the working directory, ``sys.path`` or the environment
        changed, is replaced at first use by one started as the process is then."""
        with self._lock:
            if self.failed:
                return
            self._warm.update(backends)
            if self._sock is None:
                self._start()
        for name in backends:
            self._send({"op": "warm", "backend": name})

    def expect_model(self, flavor: str, modules: tuple[str, ...]) -> None:
        """A fit of this process will report a model of ``flavor``, which loading back
        needs ``modules`` for: have the service import them, and what its backends need
        to save such a model, ahead of it (once per flavor and modules)."""
        key = (flavor, modules)
        with self._lock:
            if self.failed or key in self._models:
                return
            self._models.add(key)
            if self._sock is None:
                return  # told to the service when it starts (_start)
            message = self._warm_model(key)
        self._send(message)

    def _warm_model(self, key: tuple[str, tuple[str, ...]]) -> dict[str, Any]:
        flavor, modules = key
        backends = sorted(self._warm)  # the backends whose libraries a service imports
        return {"op": "warm_model", "flavor": flavor, "modules": [*modules], "backends": backends}

    def attach(self, lane: Lane, journal: Path) -> None:
        with self._lock:
            if self.failed:
                threading.Thread(target=lane.go_local, daemon=True).start()
                return
            if self._sock is not None and not self._attached and self._started_as != _as_now():
                self._retire()
            self._attached[str(journal)] = _Attached(lane, journal)
            if self._sock is None:
                self._start()
            else:  # `mlhooks sync` waits for the service from now
                pid = self._process.pid if self._process is not None else self.pid
                if pid is not None:
                    mark_delivered_by(journal, pid)
        self._send({"op": "tail", "journal": str(journal)})

    def wake(self) -> None:
        self._send({"op": "wake"})

    def start_now(self) -> None:
        """Have the service start its backends now, not after this process's first
        fit (see :mod:`.service_gate`); said again to each service that replaces it."""
        with self._lock:
            self._now = True
        self._say_now()

    def wait_stored(
        self, lane: Lane, upto: int, timeout: float | None, unless_unreachable: bool
    ) -> bool:
        entry = self._entry(lane)
        if entry is None:
            return upto == 0
        ident = next(self._ids)
        waiter = _Waiter(lane, upto)
        with self._lock:
            self._waiters[ident] = waiter
        self._send({"op": "flush", "journal": str(entry.journal), "upto": upto, "id": ident})
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if waiter.done.wait(0.05):
                    return waiter.ok
                if lane.service is not self:  # gone local: flush there
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    return lane.flush(left)
                if unless_unreachable and entry.unreachable_since is not None:
                    return False
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            with self._lock:
                self._waiters.pop(ident, None)

    def bye(self, lane: Lane, end: int) -> None:
        """This process is done with the lane's journal at ``end`` (at exit). The
        service is started by now (a short script may exit before the thread that
        starts it ran), or the tree's service it attached to said it serves it (else
        one of its own is started), so that it stores the journal after this process
        has gone. (A service told twice, by a replacement, heeds the first.)"""
        entry = self._entry(lane)
        if entry is None:
            return
        entry.ended = end
        self._launched.wait(LAUNCH_WAIT)
        self._send({"op": "bye", "journal": str(entry.journal), "end": end})

    def settle(self, timeout: float) -> None:
        """Wait until the service was started (or the tree's said it serves this
        process), or given up (:attr:`failed`): a lane closing at exit then knows who
        delivers it. At once when no service was asked for."""
        if self._sock is not None:
            self._launched.wait(timeout)

    def stores_before_exit(self) -> bool:
        """A process attached to another one's service (a worker, a forked child, a
        rank) waits at exit for what it left to be stored; the process that started
        the service hands over and leaves."""
        return self.attached

    def state(self, lane: Lane) -> tuple[bool, float | None]:
        entry = self._entry(lane)
        if entry is None:
            return False, None
        return entry.down, entry.unreachable_since

    def _entry(self, lane: Lane) -> _Attached | None:
        with self._lock:
            return next((e for e in self._attached.values() if e.lane is lane), None)

    # -- the service process --------------------------------------------------------------

    def _start(self) -> None:
        """Attach to the service of this process tree if one answers; else a new
        socket pair now (what is sent meanwhile waits in it) and the process on a
        thread of its own."""
        self._ready.clear()
        self._launched.clear()
        self._started_as = _as_now()
        for address in self._candidates():
            sock = service_tree.connect(address)
            if sock is None:
                continue
            try:  # first, before anything else is sent: the service checks it serves us
                sock.sendall(encode(service_tree.hello()))
            except OSError:
                service_tree.close_quietly(sock)
                continue
            self._sock, self.address, self.attached, self._hello_pending = sock, address, True, True
            threading.Thread(
                target=self._read, args=(sock, None), name="mlhooks-service-read", daemon=True
            ).start()
            self._say_now()
            self._say_models()
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        own = service_tree.own_address()
        listener = service_tree.listen(own) if own is not None else None
        self._sock, self.attached, self._hello_pending = ours, False, False
        self.address = own if listener is not None else None
        threading.Thread(
            target=self._launch,
            args=(ours, theirs, listener),
            name="mlhooks-service-start",
            daemon=True,
        ).start()
        self._say_now()
        self._say_models()

    def _say_now(self) -> None:
        if self._now:  # what is sent before the service reads waits in the socket
            self._send({"op": "now"})

    def _say_models(self) -> None:
        """Tell a service just started (or attached to) which models to make ready for."""
        for key in sorted(self._models):
            self._send(self._warm_model(key))

    def _candidates(self) -> list[str]:
        """The addresses of services this process may attach to, nearest first."""
        found = [self.inherited] if self.inherited else []
        own = service_tree.own_address()
        for address in service_tree.ancestor_addresses():
            if address not in found and address != own:
                found.append(address)
        return [address for address in found if address not in self._refused]

    def _launch(
        self, ours: socket.socket, theirs: socket.socket, listener: socket.socket | None
    ) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        stderr = _stderr_copy()
        args = [str(theirs.fileno())]
        if listener is not None:
            args.append(f"listener={listener.fileno()}")
        if stderr is not None:
            args.append(f"stderr={stderr}")
        page = self._activity_page()
        if page is not None:
            args.append(f"activity={page}")
        fds = [int(arg.rpartition("=")[2]) for arg in args]
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlhooks.delivery.service", *args],
                pass_fds=fds,
                # Not this process's stdout and stderr as the service's own: whoever
                # reads them (a shell's $(...), subprocess.run) would wait for the
                # service to end. Its warnings come here over the socket while we live;
                # after, the service writes them to the copy of our stderr it was
                # given, which it lets go once it has stored what we left.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal is the training's
            )
        except OSError as error:
            theirs.close()
            if listener is not None:
                listener.close()
            self._give_up(f"it could not be started ({error})")
            self._launched.set()
            return
        finally:
            if theirs.fileno() >= 0:
                theirs.close()
            if listener is not None and listener.fileno() >= 0:
                listener.close()  # the service's now: it ends with it
            if stderr is not None:
                os.close(stderr)
        with self._lock:
            if self._sock is not ours:
                self._launched.set()
                return
            self._process = process
            for entry in self._attached.values():  # `mlhooks sync` waits for it from now
                mark_delivered_by(entry.journal, process.pid)
        self._launched.set()
        self._read(ours, process)

    def _activity_page(self) -> int | None:
        """The file descriptor of the page where this process counts its fits, made
        (and shared with :mod:`mlhooks.core.activity`) for the first service it starts
        and kept for those that replace it."""
        with self._lock:
            if self._page is None:
                self._page = service_gate.new_page()
                if self._page is not None:
                    activity.share(self._page[1])
            return self._page[0] if self._page is not None else None

    def _read(self, sock: socket.socket, process: subprocess.Popen[bytes] | None) -> None:
        """The service's messages, until its end closes: then it died, or (attaching)
        it would not serve this process, which then starts one of its own."""
        for message in read_messages(sock):
            try:
                self._handle(message)
            except Exception as error:  # noqa: BLE001 - a bad message must not end the reader
                warn_background(
                    "service-message", f"mlhooks: bad message from the service: {error}"
                )
        if self._sock is not sock:
            return
        if self._hello_pending:
            with self._lock:
                if self.address is not None:
                    self._refused.add(self.address)  # not that one again
            self._restart(sock)
        else:
            self._died(process)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("op")
        if kind == "ready":
            with self._lock:
                self.pid = int(message["pid"])
                self._hello_pending = False
                if self.attached:  # its own service's journals are marked at its start
                    for attached in self._attached.values():
                        mark_delivered_by(attached.journal, self.pid)
            self._ready.set()
            self._launched.set()
        elif kind == "warmed":
            with self._lock:
                if "model" in message:  # what each warm-up of the flavor did, together
                    done = self.warmed_models.setdefault(str(message["model"]), {})
                    for key in ("prepared", "imported"):
                        done[key] = sorted({*done.get(key, []), *message.get(key, [])})
                else:
                    self.warmed.add(str(message["backend"]))
        elif kind == "refused":
            log.debug("mlhooks: the writer service would not serve us: %s", message["why"])
        elif kind == "flushed":
            with self._lock:
                waiter = self._waiters.get(int(message["id"]))
            if waiter is not None:
                waiter.ok = bool(message["ok"])
                waiter.done.set()
        elif kind == "state":
            with self._lock:
                entry = self._attached.get(message["journal"])
            if entry is not None:
                entry.down = bool(message["down"])
                entry.unreachable_since = message["unreachable_since"]
        elif kind == "release":
            staging.release(message["path"])
        elif kind == "warn":
            warn_background(message["key"], message["message"])
        elif kind == "notice":
            notice_once(message["key"], message["message"])
        elif kind == "error":
            relayed_error(message["key"], message["message"])

    def _died(self, process: subprocess.Popen[bytes] | None) -> None:
        """The service's end of the socket closed: it died. Start another, which goes
        on from the cursors, unless it keeps dying."""
        sock = self._sock
        code: int | None = None
        if process is not None:
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        pid = process.pid if process is not None else self.pid
        now = time.monotonic()
        with self._lock:
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
            if len(self._deaths) >= MAX_RESTARTS:
                reason = f"it died {len(self._deaths)} times in {RESTART_WINDOW:.0f} s"
            else:
                reason = ""
        if reason:
            self._give_up(reason)
            return
        how = f"exit code {code}" if code is not None else "its connection closed"
        warn_background(
            f"service-died:{pid}",
            f"mlhooks: the writer service (pid {pid}) ended unexpectedly ({how}); a new "
            "one goes on from the journal. Training is not affected.",
        )
        if sock is not None:
            self._restart(sock)

    def _restart(self, sock: socket.socket) -> None:
        """Another service (the tree's, or a new one of this process's) for every
        journal, each flush asked and each end said: it goes on from the cursors."""
        with self._lock:
            if self._sock is not sock:
                return
            self._forget_service()
            service_tree.close_quietly(sock)
            if not self._attached and not self._warm:
                return
            self._start()
            entries = list(self._attached.values())
            waiters = list(self._waiters.items())
            warm = sorted(self._warm)
        for name in warm:  # a warm-up the tree's service would not take: this one's
            self._send({"op": "warm", "backend": name})
        for entry in entries:
            self._send({"op": "tail", "journal": str(entry.journal)})
            if entry.ended is not None:
                self._send({"op": "bye", "journal": str(entry.journal), "end": entry.ended})
        for ident, waiter in waiters:
            found = self._entry(waiter.lane)
            if found is not None:
                self._send(
                    {"op": "flush", "journal": str(found.journal), "upto": waiter.upto, "id": ident}
                )

    def _forget_service(self) -> None:
        """No service from now on (until the next :meth:`_start`)."""
        self._sock = None
        self._process = None
        self.pid = None
        self.attached = False
        self.warmed.clear()
        self.warmed_models.clear()

    def _retire(self) -> None:
        """Let go of a service this process has not used yet (its end of the socket
        closes: it ends); the next :meth:`_start` begins anew."""
        sock = self._sock
        self._forget_service()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader, which sees it superseded
            service_tree.close_quietly(sock)

    def _give_up(self, reason: str) -> None:
        with self._lock:
            self.failed = True
            self._sock = None
            lanes = [entry.lane for entry in self._attached.values()]
            self._attached.clear()
        self._launched.set()  # nothing to wait for at exit: the lanes deliver here
        warn_background(
            "service-given-up",
            f"mlhooks: the writer service cannot be used ({reason}); backends are written "
            "from this process instead. Training is not affected.",
        )
        for lane in lanes:
            lane.go_local()

    def _send(self, message: dict[str, Any]) -> None:
        sock = self._sock
        if sock is None:
            return
        data = encode(message)
        # On an error, the reader sees the service's end and starts another.
        with self._send_lock, contextlib.suppress(OSError):
            sock.sendall(data)

    # -- lifetime ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """For ``mlhooks doctor`` and tests: the service's pid, whether this process
        attached to another one's, and its journals."""
        with self._lock:
            process, pid = self._process, self.pid
            if process is not None:
                running, pid = process.poll() is None, process.pid
            else:
                running = self._sock is not None and pid is not None and is_running(pid)
            return {
                "running": running,
                "pid": pid,
                "attached": self.attached,
                "failed": self.failed,
                "journals": sorted(self._attached),
                "warmed": sorted(self.warmed),
                "warmed_models": dict(self.warmed_models),
            }

    def kill_for_tests(self) -> int | None:
        """SIGKILL the service (the fault tests' way of killing it mid-fit)."""
        with self._lock:
            process, pid = self._process, self.pid
        if process is not None:
            process.kill()
            return process.pid
        if pid is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def reset_in_child(self) -> None:
        """A forked child attaches to its parent's service on first use (or starts its
        own): the parent's socket is closed here (the parent's end stays open in the
        parent), its address is kept."""
        inherited = self.address if self._sock is not None else None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._page is not None:  # the parent's (activity no longer writes to it)
            with contextlib.suppress(OSError):
                os.close(self._page[0])
            self._page[1].close()
        self.__init__()  # type: ignore[misc]
        self.inherited = inherited


def warm_up(backends: Sequence[Backend]) -> None:
    """Start the writer service ahead of the first fit (``autolog()`` calls this) when
    it is on and some of ``backends`` would run in it: it imports their libraries (a
    second or two for MLflow) in its own process while the script loads its data."""
    names = [backend.name for backend in backends if backend.journaled and backend.out_of_process]
    if not names or is_writer_service():
        return
    if setting_or_default("MLHOOKS_SERVICE") and setting_or_default("MLHOOKS_JOURNAL"):
        client.warm_up(names)


def expect_model(flavor: str, modules: Sequence[str] = ()) -> None:
    """A fit starts that will report a model of ``flavor``, which rebuilding needs
    ``modules`` for (its framework's; only those this process imported already are
    passed on, so the service runs no code the user did not): the writer service, when
    one stores this process's backends, has them import these and what they need to
    save such a model while the fit trains, once it may start its backends (see
    :mod:`.service_gate`). Where the service started at once (a Ray Tune trial) or
    the fit outlasts ``MLHOOKS_SERVICE_DEFER``, the fit's end no longer waits for these
    imports (seconds, for PyTorch and Lightning)."""
    if is_writer_service():
        return
    if isinstance(modules, str):
        modules = (modules,)
    loaded = tuple(
        m for m in modules if isinstance(m, str) and m in sys.modules and MODULE_NAME.fullmatch(m)
    )
    client.expect_model(flavor, loaded)


def start_now() -> None:
    """Have this process's writer service start its backends at once rather than once
    the first fit gave it a moment: for a process whose runs must be stored as soon as
    its fit ends (a Ray Tune worker, which may be ended next)."""
    if not is_writer_service():
        client.start_now()


def _as_now() -> tuple[str, str, tuple[str, ...]]:
    """What a service must have been started with to serve this process now."""
    return os.getcwd(), service_tree.environment_digest(), tuple(p for p in sys.path if p)


def _stderr_copy() -> int | None:
    """A copy of this process's stderr for the service (None when there is none)."""
    try:
        return os.dup(2)
    except OSError:
        return None


client = ServiceClient()
"""This process's writer service client."""

in_forked_child(client.reset_in_child, Stage.LANES)
