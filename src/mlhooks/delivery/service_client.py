"""The training process's side of the writer service (see :mod:`.service`).

A lane whose backend runs in the service (``Backend.out_of_process`` with
``MLHOOKS_SERVICE`` on) only journals: its journal thread appends what the training
thread queued, and this client tells the service, over a socket pair, which journals to
deliver and when new records are there. The service answers flush requests once what
was asked is stored, and relays its warnings, which are shown here.

The service is started on first use, on a thread of its own (never on the training
thread's path), with this process's environment and ``sys.path``. If it dies, the
client warns once and starts another, which goes on from each journal's cursor;
if it cannot be started, or dies again and again, the lanes deliver in this process
instead (one warning), from the cursor on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlhooks.core.errors import notice_once, relayed_error, warn_background
from mlhooks.core.shutdown import Stage, in_forked_child
from mlhooks.delivery import staging
from mlhooks.delivery.journal import mark_delivered_by
from mlhooks.delivery.service_wire import encode, read_messages

if TYPE_CHECKING:
    from mlhooks.delivery.lanes import Lane

LAUNCH_WAIT = 10.0
"""Seconds the exit waits for the service process to be started, if it is not yet."""
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
        """Set once the current service process was started (or could not be)."""

    # -- what lanes call ----------------------------------------------------------------

    def attach(self, lane: Lane, journal: Path) -> None:
        with self._lock:
            if self.failed:
                threading.Thread(target=lane.go_local, daemon=True).start()
                return
            self._attached[str(journal)] = _Attached(lane, journal)
            if self._sock is None:
                self._start()
            elif self._process is not None:
                mark_delivered_by(journal, self._process.pid)
        self._send({"op": "tail", "journal": str(journal)})

    def wake(self) -> None:
        self._send({"op": "wake"})

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
        starts it ran), so that it stores the journal after this process has gone."""
        entry = self._entry(lane)
        if entry is None:
            return
        entry.ended = end
        self._launched.wait(LAUNCH_WAIT)
        self._send({"op": "bye", "journal": str(entry.journal), "end": end})

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
        """A new socket pair now (what is sent meanwhile waits in it); the process on a
        thread of its own."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = ours
        self._ready.clear()
        self._launched.clear()
        threading.Thread(
            target=self._launch, args=(ours, theirs), name="mlhooks-service-start", daemon=True
        ).start()

    def _launch(self, ours: socket.socket, theirs: socket.socket) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlhooks.delivery.service", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                # Not this process's stdout and stderr: whoever reads them (a shell's
                # $(...), subprocess.run) would wait for the service to end, not for
                # this process. Its warnings come here over the socket while we live.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal is the training's
            )
        except OSError as error:
            theirs.close()
            self._give_up(f"it could not be started ({error})")
            self._launched.set()
            return
        finally:
            if theirs.fileno() >= 0:
                theirs.close()
        with self._lock:
            if self._sock is not ours:
                self._launched.set()
                return
            self._process = process
            for entry in self._attached.values():  # `mlhooks sync` waits for it from now
                mark_delivered_by(entry.journal, process.pid)
        self._launched.set()
        self._read(ours, process)

    def _read(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        for message in read_messages(sock):
            try:
                self._handle(message)
            except Exception as error:  # noqa: BLE001 - a bad message must not end the reader
                warn_background(
                    "service-message", f"mlhooks: bad message from the service: {error}"
                )
        if self._sock is sock:
            self._died(process)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("op")
        if kind == "ready":
            self.pid = int(message["pid"])
            self._ready.set()
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

    def _died(self, process: subprocess.Popen[bytes]) -> None:
        """The service's end of the socket closed: it died. Start another, which goes
        on from the cursors, unless it keeps dying."""
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        now = time.monotonic()
        with self._lock:
            self._sock = None
            self._process = None
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
            if len(self._deaths) >= MAX_RESTARTS:
                reason = f"it died {len(self._deaths)} times in {RESTART_WINDOW:.0f} s"
            else:
                reason = ""
        if reason:
            self._give_up(reason)
            return
        warn_background(
            f"service-died:{process.pid}",
            f"mlhooks: the writer service (pid {process.pid}) ended unexpectedly (exit code "
            f"{code}); a new one goes on from the journal. Training is not affected.",
        )
        with self._lock:
            if not self._attached:
                return
            self._start()
            entries = list(self._attached.values())
            waiters = list(self._waiters.items())
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

    def _give_up(self, reason: str) -> None:
        with self._lock:
            self.failed = True
            self._sock = None
            lanes = [entry.lane for entry in self._attached.values()]
            self._attached.clear()
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
        """For ``mlhooks doctor`` and tests: the service's pid and its journals."""
        with self._lock:
            return {
                "running": self._process is not None and self._process.poll() is None,
                "pid": self._process.pid if self._process is not None else None,
                "failed": self.failed,
                "journals": sorted(self._attached),
            }

    def kill_for_tests(self) -> int | None:
        """SIGKILL the service (the fault tests' way of killing it mid-fit)."""
        with self._lock:
            process = self._process
        if process is None:
            return None
        process.kill()
        return process.pid

    def reset_in_child(self) -> None:
        """A forked child gets its own service: the parent's socket is closed here
        (the parent's end stays open in the parent)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self.__init__()  # type: ignore[misc]


client = ServiceClient()
"""This process's writer service client."""

in_forked_child(client.reset_in_child, Stage.LANES)
