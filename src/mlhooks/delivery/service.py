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
its exit, where each journal ends. When that process is gone, the service notices at
once (its end of the socket closes), finishes every journal (a process that died
without its exit sequence leaves its open runs ended KILLED) and exits. Its warnings
go to the training process while it lives, to the shared stderr after.

Run as ``python -m mlhooks.delivery.service FD``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlhooks.backends.base import EndRun, LogArtifact, Operation, StartRun
from mlhooks.core import errors
from mlhooks.core.types import RunStatus
from mlhooks.delivery import selection, staging
from mlhooks.delivery.batching import FlushMarker
from mlhooks.delivery.journal import SERVICE_SUFFIX, CursorFile, JournalFile, owner_alive
from mlhooks.delivery.journaling import JournalPart, _weight
from mlhooks.delivery.lanes import Lane, retry_policy_from_env
from mlhooks.delivery.service_wire import encode, read_messages

CURSOR_WAIT = 10.0
"""Seconds a new service waits for a dead one's hold on a journal's cursor to go."""
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
            yield from self.journal.records(self.offset)
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
        is closed whole (see :meth:`Tail.finish`)."""
        with self.lock:
            self.cursor.close()
            if remove and self.fully_read:
                self.journal.path.unlink(missing_ok=True)
                self.journal.cursor_path.unlink(missing_ok=True)


def _first_offset(path: Path) -> int:
    with open(path, "rb") as f:
        return len(f.readline())


class Tail:
    """One journal of the training process, delivered by this service."""

    def __init__(self, service: Service, path: Path) -> None:
        self.service = service
        self.path = path
        self.lane: Lane | None = None
        self.part: TailPart | None = None
        self.end: int | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self.failed = False
        self._said: tuple[bool, float | None] = (False, None)

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
        Path(str(self.path) + SERVICE_SUFFIX).write_text(str(os.getpid()))
        lane._start()
        self.ready.set()

    def flush(self, upto: int, ident: int) -> None:
        """Answer flush ``ident`` once the operations before ``upto`` are stored."""
        self.ready.wait()
        if self.part is None:  # it could not be started: told already
            self.service.send({"op": "flushed", "id": ident, "ok": False})
            return
        marker = self.part.request(upto)
        self.service.wake()
        marker.done.wait()
        self.service.send({"op": "flushed", "id": ident, "ok": marker.ok})

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
        self._let_go()

    def give_up(self) -> None:
        """The lane did not close in time (it was never started, or its close itself
        hangs): what was read and not stored goes to a spool, the rest stays in the
        journal from its cursor (``mlhooks sync`` delivers both)."""
        if self.lane is not None:
            self.lane.close(0.0)  # nothing when a close began already
        self._let_go()

    def _let_go(self) -> None:
        """This service no longer delivers the journal: its marker goes (what tells
        ``mlhooks doctor`` and the tests which service holds the journal)."""
        Path(str(self.path) + SERVICE_SUFFIX).unlink(missing_ok=True)
        self.done.set()

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


class Service:
    """The service's main loop: messages in, journals delivered, state out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tails: dict[str, Tail] = {}
        self._send_lock = threading.Lock()
        self.gone = False
        self.leftover_snapshots: set[str] = set()

    def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            return
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(encode(message))

    def relay(self, kind: str, key: str, message: str) -> None:
        self.send({"op": kind, "key": key, "message": message})

    def wake(self) -> None:
        from mlhooks.delivery.journaling import journaler

        journaler.wake.set()

    def released(self, path: str) -> None:
        """A snapshot of the training process was stored: it holds the count, while it
        lives; after, the snapshot goes once nothing left to replay names it."""
        if self.gone:
            with self._send_lock:
                self.leftover_snapshots.add(path)
        else:
            self.send({"op": "release", "path": path})

    def run(self) -> None:
        errors.set_relay(self.relay)
        staging.release_elsewhere(self.released)
        self.send({"op": "ready", "pid": os.getpid()})
        threading.Thread(
            target=self._tell_states, name="mlhooks-service-state", daemon=True
        ).start()
        for message in read_messages(self.sock):
            try:
                self.handle(message)
            except Exception as error:  # noqa: BLE001 - the service must live on
                errors.report_background_error("writer service", error)
        # The training process closed its end: it exited or died.
        self.gone = True
        errors.set_relay(None)
        finishing = []
        for tail in list(self.tails.values()):
            if tail.end is None:
                thread = threading.Thread(target=self._finish, args=(tail, True), daemon=True)
                thread.start()
                finishing.append(thread)
        deadline = time.monotonic() + _exit_timeout() + CLOSE_SLACK
        for tail in list(self.tails.values()):
            if not tail.done.wait(max(0.0, deadline - time.monotonic())):
                tail.give_up()
        self._discard_snapshots()

    def _discard_snapshots(self) -> None:
        roots = {tail.path.parent.parent for tail in self.tails.values()}
        for root in roots:
            stored = staging.StoredSnapshots(root)
            for path in self.leftover_snapshots:
                stored.stored(LogArtifact(run_id="", local_path=path))
            stored.discard()

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("op")
        if kind == "wake":
            self.wake()
        elif kind == "tail":
            path = message["journal"]
            if path not in self.tails:
                tail = self.tails[path] = Tail(self, Path(path))
                threading.Thread(target=self._start, args=(tail,), daemon=True).start()
        elif kind == "flush":
            tail = self.tails[message["journal"]]
            threading.Thread(
                target=tail.flush, args=(int(message["upto"]), int(message["id"])), daemon=True
            ).start()
        elif kind == "bye":
            tail = self.tails[message["journal"]]
            tail.end = int(message["end"])
            threading.Thread(target=self._finish, args=(tail, False), daemon=True).start()

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
        while not self.gone:
            for tail in list(self.tails.values()):
                state = tail.state()
                if state is not None:
                    self.send(state)
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the training's
    sock = socket.socket(fileno=int(argv[1]))
    Service(sock).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


__all__ = ["StartRun", "TailPart", "main"]
