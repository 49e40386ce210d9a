"""The writer service: a child process that stores what its training process journals.

Backends whose work is heavy Python (an MLflow client, model saving, event files) would
take the CPU and the GIL from a training loop; with ``MLHOOKS_SERVICE`` on, the training
process only journals their operations (see :mod:`.journaling`), and this process
delivers each journal through the same lane machinery as in process: batching,
retries, the outage watch, spools, rejected operations. It moves each journal's cursor
as it stores, holding the cursor's lock, so that nothing else delivers the journal
meanwhile and a new service goes on exactly where a dead one stopped.

Its training process tells it (:mod:`.service_client`, over a socket pair): which
journals to deliver, when new records are there, which flushes it waits for, and, at
its exit, where each journal ends. The processes of its tree (forked children,
workers) may attach and say the same over a socket of their own (see
:mod:`.service_tree`). When a process is gone, the service notices at once (its end of
the socket closes) and finishes its journals as its exit would have (a process that
died without its exit sequence leaves its open runs ended KILLED); once every process
it served is gone, it exits. A process's exit does not wait for its backends: it
journals what is queued, says where each journal ends and leaves; the service stores
the rest after it. Its warnings go to the process whose journal they are about while
it lives (each shown there once); after, to a copy of the stderr of the process that
started the service, each not told before: an outage met after the script exited is
still told where its user looks. The service lets that copy go when it ends, once it
has finished what every process it served left, so a caller that reads the script's
stderr to its end (a shell's ``$(...)``, ``subprocess.run``) waits until then: at
most ``MLHOOKS_EXIT_TIMEOUT`` plus :data:`CLOSE_SLACK` after the last of them exited.

Its backends start once its training process gives it a moment, or it is needed (see
:mod:`.service_gate`).

Run as ``python -m mlhooks.delivery.service FD [listener=FD] [stderr=FD] [activity=FD]``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlhooks.backends.base import EndRun, LogArtifact, Operation, StartRun
from mlhooks.core import errors
from mlhooks.core.processes import become_writer_service
from mlhooks.core.types import RunStatus
from mlhooks.delivery import selection, service_tree, staging
from mlhooks.delivery.batching import FlushMarker
from mlhooks.delivery.journal import (
    SERVICE_SUFFIX,
    CursorFile,
    JournalFile,
    mark_delivered_by,
    owner_alive,
    service_marker,
)
from mlhooks.delivery.journaling import JournalPart, _weight
from mlhooks.delivery.lanes import Lane, retry_policy_from_env
from mlhooks.delivery.service_gate import StartGate
from mlhooks.delivery.service_wire import MODULE_NAME, encode, read_messages

log = logging.getLogger(__name__)

CURSOR_WAIT = 10.0
"""Seconds a new service waits for a dead one's hold on a journal's cursor to go."""
HELLO_WAIT = 10.0
"""Seconds a process that attaches gets to say hello."""
NICENESS = 5
"""How much lower than its training process's the service's CPU priority is: on a
machine whose cores the training keeps busy, tracking waits (its journal holds what
it has not stored), not the training."""
CLOSE_SLACK = 15.0
"""Seconds past ``MLHOOKS_EXIT_TIMEOUT`` a lane's close gets to spool what is left
(it lets an operation being stored finish first), before the service gives it up."""


def _exit_timeout() -> float:
    timeout: float = errors.setting_or_default("MLHOOKS_EXIT_TIMEOUT")
    return timeout


class TailPart(JournalPart):
    """A journal another (live) process writes, read as it grows: the service's lane
    takes its operations from here, and its cursor moves as they are stored."""

    def __init__(self, lane: Lane, journal: JournalFile, cursor: CursorFile) -> None:
        super().__init__(lane, journal.path.parent, lane.queue_limit)
        self.journal = journal
        self.cursor = cursor
        self.first_reading = cursor.take_first()
        """Whether nothing delivered the journal before this service: the runs it
        starts as new are created without being looked for (see :func:`.spool.decode`)."""
        header = journal.header()
        self.open_runs = dict.fromkeys(header.open_runs)
        start = max(journal.delivered(), header.first)
        self.offset = _first_offset(journal.path)
        for index, op, after in journal.records():
            if index >= start:
                break
            self._track_open_runs([op])  # what the dead service stored: which runs it opened
            self.offset = after
        window = self.window
        window.end = window.delivered = start
        self.fully_read = False
        """True once the journal's writer is done and everything in it was read."""
        self._requests: list[tuple[int, FlushMarker]] = []
        self._extra: list[Operation] = []

    def _round(self) -> bool:
        window = self.window
        wake = False
        for item in self.lane._take_queued():  # the lane's own flush markers (exit)
            if isinstance(item, FlushMarker):
                self._requests.append((window.end, item))
        if window.weight < window.limit and self.journal.path.exists():
            for index, op, after in self._records():
                if index < window.end:  # pragma: no cover - read before; never expected
                    self.offset = after
                    continue
                self._track_open_runs([op])
                self._add(index, op)
                self.offset = after
                if window.weight >= window.limit:
                    break
        if self._extra:
            extra, self._extra = self._extra, []
            for op in extra:
                self._add(window.end, op)
        due = [request for request in self._requests if request[0] <= window.end]
        if due:
            self._requests = [request for request in self._requests if request[0] > window.end]
            with window.lock:
                window.markers.extend(due)
                window.markers = type(window.markers)(sorted(window.markers, key=lambda m: m[0]))
            self.lane.pacer.urgent = True
            wake = True
        return wake or window.weight >= self.lane.backend.max_batch_size

    def _records(self) -> Iterator[tuple[int, Operation, int]]:
        try:
            yield from self.journal.records(self.offset, self.first_reading)
        except FileNotFoundError:
            return  # removed by its writer: everything in it was stored

    def _add(self, index: int, op: Operation) -> None:
        window = self.window
        with window.lock:
            window.memory.append((index, op))
            window.weight += _weight(op)
            window.end = index + 1

    def request(self, upto: int) -> FlushMarker:
        """A marker released once the operations before index ``upto`` are stored."""
        marker = FlushMarker()
        with self.lock:
            self._requests.append((upto, marker))
        return marker

    def read_all(self) -> int:
        """Read what is left in the journal (its writer is done); where it ends."""
        while True:
            with self.lock:
                before = self.window.end
                self._round()
                if self.window.end == before:
                    return before

    def add_ends(self, ops: list[Operation]) -> None:
        """Operations not in the journal, stored after everything in it (the KILLED
        ends of runs a dead process left open)."""
        with self.lock:
            self._extra.extend(ops)

    def delivered(self, upto: int) -> None:
        super().delivered(upto)
        try:
            self.cursor.save(upto)
        except OSError as error:
            errors.report_background_error(f"journal cursor of {self.lane.backend.name!r}", error)

    def close(self, remove: bool) -> None:
        """Let go of the cursor; ``remove`` the journal when everything in it was read
        and stored (or spooled). The service's marker beside it stays until the lane
        is closed whole and its process gone (see :meth:`Service._leave`)."""
        with self.lock:
            self.cursor.close()
            if remove and self.fully_read:
                self.journal.path.unlink(missing_ok=True)
                self.journal.cursor_path.unlink(missing_ok=True)


def _first_offset(path: Path) -> int:
    with open(path, "rb") as f:
        return len(f.readline())


class Tail:
    """One journal of a training process, delivered by this service."""

    def __init__(self, service: Service, client: Client, path: Path) -> None:
        self.service = service
        self.client = client
        self.path = path
        self._threads: list[threading.Thread] = []
        self.lane: Lane | None = None
        self.part: TailPart | None = None
        self.end: int | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self.failed = False
        self._said: tuple[bool, float | None] = (False, None)

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        """Run ``target(*args)`` on a thread of its own, working for this journal."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def threads(self) -> list[threading.Thread]:
        """The threads that work for this journal (whose warnings go to its process)."""
        lane = self.lane
        return self._threads + (lane.threads() if lane is not None else [])

    def start(self) -> None:
        """Take the journal's cursor (a dead service's hold goes with it), build the
        backend from the journal's header and start delivering."""
        journal = JournalFile(self.path)
        deadline = time.monotonic() + CURSOR_WAIT
        while True:
            try:
                cursor = CursorFile(journal.cursor_path)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        try:
            if not self.service.gate.is_open:  # for doctor
                mark_delivered_by(self.path, os.getpid(), held=True)
                self.service.gate.wait()  # not while the first fit trains (service_gate)
                mark_delivered_by(self.path, os.getpid())
            header = journal.header()
            backend = selection.backend_named(header.backend, **header.options)
            if header.forked:
                # Written by a forked child: the runs it inherited may not be stored by
                # its parent's service yet, which the backend then waits for (retries).
                backend.after_fork()
            root = self.path.parent.parent
            part: list[TailPart] = []

            def make_part(lane: Lane) -> JournalPart:
                part.append(TailPart(lane, journal, cursor))
                return part[-1]

            lane = Lane(
                backend,
                spool_dir=root / ".spool",
                retry=retry_policy_from_env(),
                journal=self.path.parent,
                part=make_part,
            )
        except BaseException:
            cursor.close()
            raise
        self.lane, self.part = lane, part[-1]
        mark_delivered_by(self.path, os.getpid())
        lane._start()
        self.ready.set()

    def flush(self, upto: int, ident: int) -> None:
        """Answer flush ``ident`` once the operations before ``upto`` are stored."""
        self.ready.wait()
        if self.part is None:  # it could not be started: told already
            self.client.send({"op": "flushed", "id": ident, "ok": False})
            return
        marker = self.part.request(upto)
        self.service.wake()
        marker.done.wait()
        self.client.send({"op": "flushed", "id": ident, "ok": marker.ok})

    def finish(self, died: bool, timeout: float) -> None:
        """The training process is done with this journal (``end`` said at its exit) or
        died: store the rest, ending the runs it left open KILLED, as its own exit
        would have: within ``timeout`` seconds (``MLHOOKS_EXIT_TIMEOUT``), not waiting
        for a backend known not to answer; what is then still not stored (a request
        that hangs included) is spooled for ``mlhooks sync``, and the journal goes."""
        self.ready.wait()
        lane, part = self.lane, self.part
        assert lane is not None and part is not None
        if died or self.end is None:
            while owner_alive(self.path):  # its last journal write may still be going on
                time.sleep(0.05)
        part.read_all()
        if self.end is None and part.open_runs:
            stamp = int(self.path.stat().st_mtime * 1000) if self.path.exists() else 0
            part.add_ends([EndRun(r, RunStatus.KILLED.value, stamp) for r in part.open_runs])
            part.read_all()  # the ends join the window before the close's flush asks
        part.fully_read = True
        self.service.wake()
        lane.close(timeout)
        self.done.set()

    def give_up(self) -> None:
        """The lane did not close in time (it was never started, or its close itself
        hangs): what was read and not stored goes to a spool, the rest stays in the
        journal from its cursor (``mlhooks sync`` delivers both)."""
        if self.lane is not None:
            self.lane.close(0.0)  # nothing when a close began already
        self.done.set()

    def unmark(self) -> None:
        """This service no longer delivers the journal: its marker goes (what ``mlhooks
        sync`` and ``run_script`` wait for, and what ``mlhooks doctor`` shows). A marker
        naming another service (one that replaced this one) stays."""
        said = service_marker(self.path)
        if said is not None and said[0] == os.getpid():
            with contextlib.suppress(OSError):  # only for doctor and waiting: never fatal
                Path(str(self.path) + SERVICE_SUFFIX).unlink()

    def state(self) -> dict[str, Any] | None:
        """The lane's outage state when it changed since last said."""
        lane = self.lane
        if lane is None:
            return None
        now = (lane.is_down, lane.unreachable_since)
        if now == self._said:
            return None
        self._said = now
        return {
            "op": "state",
            "journal": str(self.path),
            "down": now[0],
            "unreachable_since": now[1],
        }


class Client:
    """A training process this service delivers for: the one that started it, or one
    of its tree that attached (see :mod:`.service_tree`)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.tails: dict[str, Tail] = {}
        self.gone = False
        """True once its end of the connection closed: it exited or died."""
        self.snapshots: set[str] = set()
        """Its snapshots this service stored (it may be gone before it deletes them)."""
        self.told: set[str] = set()
        """The keys of the warnings and notices it was sent (not shown again after)."""
        self._send_lock = threading.Lock()

    def leaving(self) -> bool:
        """True once the process is gone, or said where each of its journals ends (it
        exits: what is sent from then on may never be read)."""
        tails = list(self.tails.values())
        return self.gone or (bool(tails) and all(tail.end is not None for tail in tails))

    def send(self, message: dict[str, Any]) -> bool:
        """Send ``message``; False when the process is gone."""
        if self.gone:
            return False
        data = encode(message)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError:
            return False
        return True


class Service:
    """The service's loop: connections in, their journals delivered, state out. It ends
    once every process it served is gone and their journals are finished."""

    def __init__(
        self,
        sock: socket.socket,
        listener: socket.socket | None = None,
        gate: StartGate | None = None,
    ) -> None:
        self.sock = sock
        self.listener = listener
        self.gate = gate or StartGate()
        """Holds the backends' start back while the first fit trains."""
        self.clients: list[Client] = []
        """The processes served now (one whose journals are all finished leaves)."""
        self.roots: set[Path] = set()
        """The local dirs of the journals of the processes that left."""
        self.leftover_snapshots: set[str] = set()
        """Snapshots stored for no process in particular (their thread was no journal's)."""
        self.warmed: set[str] = set()
        """The backends whose libraries were imported ahead of their first journal."""
        self._lock = threading.Lock()
        self.closing = False
        """True once the last process is gone: nobody attaches any more."""
        self._ended = threading.Event()

    # -- who a thread works for --------------------------------------------------------

    def _tail_of_this_thread(self) -> Tail | None:
        current = threading.current_thread()
        for client in list(self.clients):
            for tail in list(client.tails.values()):
                if current in tail.threads():
                    return tail
        return None

    def _client_of_this_thread(self) -> Client | None:
        tail = self._tail_of_this_thread()
        return tail.client if tail is not None else None

    def relay(self, kind: str, key: str, message: str) -> None:
        """A warning, notice or error of this process goes to the process whose journal
        it is about, which shows it (one about no journal in particular: to the first
        process still there); once that process is gone, to this process's stderr (a
        copy of the starter's while it is held: see the module's docstring), unless
        that process was sent it before. The journal's outage state goes first: a
        process told that its backend is down knows it (a run it ends does not
        wait)."""
        tail = self._tail_of_this_thread()
        if tail is not None:
            client: Client | None = tail.client
            state = tail.state()
            if state is not None:
                tail.client.send(state)
        else:
            client = next((c for c in list(self.clients) if not c.leaving()), None)
        if (
            client is not None
            and not client.leaving()
            and client.send({"op": kind, "key": key, "message": message})
        ):
            client.told.add(key)
        elif client is None or key not in client.told:
            errors.show_here(kind, key, message)

    def wake(self) -> None:
        from mlhooks.delivery.journaling import journaler

        journaler.wake.set()

    def released(self, path: str) -> None:
        """A snapshot of a training process was stored: that process holds the count,
        while it lives (it may exit before it reads this: its exit hands over, it does
        not wait); after, the snapshot goes once nothing left to replay names it (when
        the process leaves this service: see :meth:`_leave`)."""
        client = self._client_of_this_thread()
        with self._lock:
            (client.snapshots if client is not None else self.leftover_snapshots).add(path)
        if client is not None:
            client.send({"op": "release", "path": path})

    # -- lifetime --------------------------------------------------------------------------

    def run(self) -> None:
        errors.set_relay(self.relay)
        staging.release_elsewhere(self.released)
        owner = Client(self.sock, os.getppid())
        self.clients.append(owner)
        owner.send({"op": "ready", "pid": os.getpid()})
        if self.listener is not None:
            threading.Thread(
                target=self._accept, name="mlhooks-service-accept", daemon=True
            ).start()
        threading.Thread(
            target=self._tell_states, name="mlhooks-service-state", daemon=True
        ).start()
        self._serve(owner, read_messages(self.sock))
        self._ended.wait()
        _discard_snapshots(self.roots, self.leftover_snapshots)
        _let_go_of_stderr()  # last: whoever waits for it finds everything tidied

    def _accept(self) -> None:
        listener = self.listener
        assert listener is not None
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # closed: this service ends
            threading.Thread(
                target=self._attach, args=(sock,), name="mlhooks-service-attach", daemon=True
            ).start()

    def _attach(self, sock: socket.socket) -> None:
        """A process of the tree asks to be served: it must be this user's, and say
        (first) that it runs what this service runs."""
        try:
            pid, uid = service_tree.peer(sock)
            if uid != os.getuid():
                raise PermissionError(f"process {pid} is another user's")
            sock.settimeout(HELLO_WAIT)
            messages = read_messages(sock)
            said = next(messages, None)
            sock.settimeout(None)
        except OSError:
            service_tree.close_quietly(sock)
            return
        why = "it did not say hello" if said is None else service_tree.mismatch(said)
        client = Client(sock, pid)
        with self._lock:
            if why is None and not self.closing:
                self.clients.append(client)
        if why is not None or client not in self.clients:
            client.send({"op": "refused", "why": why or "the service ends"})
            service_tree.close_quietly(sock)
            return
        self.gate.open()  # one process's fits are not all the tree's
        client.send({"op": "ready", "pid": os.getpid()})
        self._serve(client, messages)

    def _serve(self, client: Client, messages: Iterator[dict[str, Any]]) -> None:
        for message in messages:
            try:
                self.handle(client, message)
            except Exception as error:  # noqa: BLE001 - the service must live on
                errors.report_background_error("writer service", error)
        # The process closed its end: it exited or died.
        client.gone = True
        self.gate.open()
        for tail in list(client.tails.values()):
            if tail.end is None:
                tail.spawn(self._finish, tail, True)
        deadline = time.monotonic() + _exit_timeout() + CLOSE_SLACK
        for tail in list(client.tails.values()):
            if not tail.done.wait(max(0.0, deadline - time.monotonic())):
                tail.give_up()
        self._leave(client)

    def _leave(self, client: Client) -> None:
        """``client`` is gone and its journals are finished (their lanes closed whole,
        spools let go of): the snapshots stored for it go (those nothing left to replay
        names), then the journals' markers (what ``mlhooks sync`` waited for), and the
        journal folders and roots left empty (the process could not remove its root
        while the service stored from it); its lanes and backends go; the service
        ends with the last process it served."""
        roots = {tail.path.parent.parent for tail in client.tails.values()}
        _discard_snapshots(roots, client.snapshots)
        for tail in client.tails.values():
            tail.unmark()
        for folder in [*{tail.path.parent for tail in client.tails.values()}, *roots]:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a journal kept for sync stays
        with self._lock:
            self.roots |= roots
            self.clients.remove(client)
            if not self.clients:
                self.closing = True  # nobody attaches from now on
                if self.listener is not None:
                    service_tree.close_quietly(self.listener)
                self._ended.set()

    def handle(self, client: Client, message: dict[str, Any]) -> None:
        kind = message.get("op")
        if kind == "wake":
            self.wake()
        elif kind == "warm":
            name = str(message["backend"])
            with self._lock:
                warm = name not in self.warmed
                self.warmed.add(name)
            if warm:
                threading.Thread(
                    target=_warm_up,
                    args=(client, name, self.gate),
                    name="mlhooks-service-warm",
                    daemon=True,
                ).start()
        elif kind == "warm_model":
            if not message.get("backends"):  # a forked child's: its parent warmed ours
                with self._lock:
                    message["backends"] = sorted(self.warmed)
            threading.Thread(
                target=_warm_model,
                args=(client, message),
                kwargs={"gate": self.gate},
                name="mlhooks-service-warm-model",
                daemon=True,
            ).start()
        elif kind == "tail":
            path = message["journal"]
            if path not in client.tails:
                tail = client.tails[path] = Tail(self, client, Path(path))
                tail.spawn(self._start, tail)
        elif kind == "now":
            self.gate.open()
        elif kind == "flush":
            self.gate.open()
            tail = client.tails[message["journal"]]
            tail.spawn(tail.flush, int(message["upto"]), int(message["id"]))
        elif kind == "bye":
            found = client.tails.get(message["journal"])
            if found is None or found.end is not None:
                return  # said again by a process that replaced its service meanwhile
            found.end = int(message["end"])
            self.gate.open()
            found.spawn(self._finish, found, False)

    def _start(self, tail: Tail) -> None:
        try:
            tail.start()
        except Exception as error:  # noqa: BLE001 - told; the journal waits for sync
            errors.report_background_error(f"writer service, journal {tail.path.name}", error)
            tail.done.set()
            tail.ready.set()

    def _finish(self, tail: Tail, died: bool) -> None:
        tail.ready.wait()
        if tail.lane is None:
            return
        try:
            tail.finish(died, _exit_timeout())
        except Exception as error:  # noqa: BLE001 - the journal stays for mlhooks sync
            errors.report_background_error(f"writer service, journal {tail.path.name}", error)
            tail.give_up()

    def _tell_states(self) -> None:
        while not self.closing:
            for client in list(self.clients):
                for tail in list(client.tails.values()):
                    state = tail.state()
                    if state is not None:
                        client.send(state)
            time.sleep(0.1)


def _warm_up(client: Client, name: str, gate: StartGate) -> None:
    """Import what backend ``name`` needs (its ``prepare``), ahead of its first journal
    (once ``gate`` opens), and tell ``client`` it is done. A backend that cannot be
    built without options, or whose import fails, is left to its lane, which reports
    what goes wrong when it has something to store."""
    gate.wait()
    try:
        selection.backend_named(name).prepare()
    except Exception:
        log.debug("mlhooks: warming up backend %r failed", name, exc_info=True)
        return
    client.send({"op": "warmed", "backend": name})


def _warm_model(client: Client, message: dict[str, Any], *, gate: StartGate) -> None:
    """``warm_model``: once ``gate`` opens, have each backend named make ready for a
    model of the flavor (its ``prepare_model``, which imports what saving it needs and
    the modules, what rebuilding the captured model imports), then tell ``client``
    which backends did and which of the modules are imported. A failure is left to the
    model's save, which reports it."""
    flavor = str(message.get("flavor", ""))
    modules = [
        m for m in message.get("modules", []) if isinstance(m, str) and MODULE_NAME.fullmatch(m)
    ]
    gate.wait()
    prepared = []
    for name in message.get("backends", []):
        try:
            backend = selection.backend_named(str(name))
            backend.prepare()
            backend.prepare_model(flavor, modules)
        except Exception:  # a warm-up only: the save says what is wrong
            log.debug("mlhooks: %r preparing for %r models failed", name, flavor, exc_info=True)
        else:
            prepared.append(str(name))
    imported = [m for m in modules if m in sys.modules]
    client.send({"op": "warmed", "model": flavor, "prepared": prepared, "imported": imported})


def _discard_snapshots(roots: set[Path], paths: set[str]) -> None:
    """Remove the snapshots at ``paths`` under ``roots`` that nothing left to replay
    names (their processes are gone; see :class:`~.staging.StoredSnapshots`)."""
    if not paths:
        return
    for root in roots:
        stored = staging.StoredSnapshots(root)
        for path in paths:
            stored.stored(LogArtifact(run_id="", local_path=path))
        stored.discard()


def _let_go_of_stderr() -> None:
    """Point this process's stderr at /dev/null: a copy of the starter's stderr held
    here is let go (whoever reads it to its end stops waiting)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)


def main(argv: list[str]) -> int:
    """``FD [listener=FD] [stderr=FD] [activity=FD]``: the socket to the training
    process that started this service, the one that the processes of its tree attach
    through, a copy of the starter's stderr (this process's stderr from here on, until
    the starter's journals are finished), and the page of shared memory where the
    starter counts its fits (see :mod:`.service_gate`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the training's
    with contextlib.suppress(OSError):
        os.nice(NICENESS)  # where cores are short, the training goes first
    become_writer_service()
    sock = socket.socket(fileno=int(argv[1]))
    fds = dict(arg.split("=", 1) for arg in argv[2:])
    listener = socket.socket(fileno=int(fds["listener"])) if "listener" in fds else None
    if "stderr" in fds:
        os.dup2(int(fds["stderr"]), 2)
        os.close(int(fds["stderr"]))
    activity = int(fds["activity"]) if "activity" in fds else None
    defer: float = errors.setting_or_default("MLHOOKS_SERVICE_DEFER")
    Service(sock, listener, StartGate(activity, defer)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


__all__ = ["StartRun", "TailPart", "main"]
