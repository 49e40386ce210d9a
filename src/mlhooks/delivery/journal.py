"""The write-ahead journal: every operation a lane will deliver, on local disk first.

Each journaled lane (one backend in one process) appends its operations to a journal
file under ``<local dir>/.journal`` within ``MLHOOKS_JOURNAL_INTERVAL`` seconds of
their report, on the journal thread (see :mod:`.journaling`), and its writer delivers
them from there. A cursor file beside the journal counts the operations delivered.

While its process lives, the journal is locked (``flock``). A journal nobody holds
belongs to a process that died without its exit sequence (SIGKILL, ``os._exit``, the
OOM killer): :func:`recover` delivers what its cursor had not reached, exactly once, and
ends the runs it left open KILLED. ``mlhooks sync`` and the next process that tracks in
the same place run it.

A record is ``<length, crc32, index>`` then the operation, marshalled: a record torn by
a death half-way through its write fails its check and is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import marshal
import os
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlhooks.backends.base import Backend, EndRun, LogBatch, Operation, StartRun
from mlhooks.core.processes import is_running
from mlhooks.core.shutdown import is_forked_child
from mlhooks.core.types import RunStatus
from mlhooks.delivery.spool import decode, encode, find_spools

JOURNAL_SUFFIX = ".journal"
_RECORD = struct.Struct("<IIQ")  # payload length, crc32 of the payload, operation index
_CURSOR_WIDTH = 20
_FIRST = b"unread\n"
"""The cursor file's second line while no deliverer took the journal yet (the writer
service reads it first: see :meth:`CursorFile.take_first`)."""


def _cursor_line(delivered: int) -> bytes:
    """A cursor file's first line: how many operations were delivered, at full width
    (written in place)."""
    return b"%0*d\n" % (_CURSOR_WIDTH, delivered)


def journal_dir(root: Path) -> Path:
    return root / ".journal"


# -- what a process is ---------------------------------------------------------------------


def process_started(pid: int | None = None) -> float:
    """When process ``pid`` (this one by default) started, in seconds since the epoch
    (0.0 where the system does not say). With the pid, it tells a process from a later
    one that got the same pid."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5): start time in clock ticks after boot
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


# -- encoding -------------------------------------------------------------------------------


def _pack(op: Operation) -> bytes:
    """``op`` as marshalled plain data (metric points stay tuples: the bulk, cheap)."""
    if type(op) is LogBatch:
        with contextlib.suppress(ValueError):
            return marshal.dumps(("b", op.run_id, op.metrics, op.params, op.tags))
    data = encode(op)
    try:
        return marshal.dumps(("o", data))
    except ValueError:  # a value marshal cannot hold (numpy, a datetime): as JSON keeps it
        return marshal.dumps(("o", json.loads(json.dumps(data, default=str))))


def _unpack(payload: bytes, first_reading: bool = False) -> Operation:
    data = marshal.loads(payload)  # checked by its crc32 first; our own file
    if data[0] == "b":
        _, run_id, metrics, params, tags = data
        return LogBatch(run_id, [tuple(point) for point in metrics], params, tags)
    return decode(data[1], first_reading)


# -- writing --------------------------------------------------------------------------------


class JournalWriter:
    """The journal of one lane of this process: appended by the journal thread, its
    cursor moved by the lane's writer."""

    def __init__(self, directory: Path, backend: Backend, *, deliver_here: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.deliver_here = deliver_here
        """Whether this process delivers the journal (it then holds the cursor's lock);
        False when the writer service does (see :mod:`.service`)."""
        self.directory = directory
        self.backend_name = backend.name
        self.options = backend.spec()
        self.written = 0
        """Index of the next operation appended (operations 0 .. written-1 are on disk)."""
        self.size = 0
        self._file: io.FileIO | None = None
        self._cursor_fd = -1
        self.path = self._open([])

    def _open(self, open_runs: list[str]) -> Path:
        name = f"{self.backend_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}{JOURNAL_SUFFIX}"
        path = self.directory / name
        # Unbuffered: nothing waits in a buffer that a forked child could write twice.
        file = open(path, "xb", buffering=0)  # noqa: SIM115 - kept open for the process's life
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: never contended
            header = {
                "journal": 1,
                "backend": self.backend_name,
                "options": self.options,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "process_started": process_started(),
                "created": time.time(),
                "first": self.written,
                "open_runs": open_runs,
                "forked": is_forked_child(),
            }
            line = (json.dumps(header, default=str) + "\n").encode()
            _write_all(file, line)
            cursor_fd = os.open(
                str(path) + ".cursor", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
            )
            try:
                if self.deliver_here:
                    fcntl.flock(cursor_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: never contended
                # Delivered by the service: unread, so its first deliverer may trust it.
                unread = b"" if self.deliver_here else _FIRST
                os.pwrite(cursor_fd, _cursor_line(self.written) + unread, 0)
            except BaseException:
                os.close(cursor_fd)
                raise
        except BaseException:
            # A full or read-only disk: no empty journal (nor an open descriptor) is
            # left per attempt; the next round tries again.
            file.close()
            _remove(path)
            raise
        self._file = file
        self.size = len(line)
        self._cursor_fd = cursor_fd
        return path

    def append(self, ops: list[Operation]) -> None:
        """Append ``ops`` (indexes ``written`` on) and hand them to the OS: a process
        killed from now on leaves them on disk. Raises OSError (a full disk); then the
        file is cut back to its last whole record."""
        assert self._file is not None
        chunks = []
        index = self.written
        for op in ops:
            payload = _pack(op)
            chunks.append(_RECORD.pack(len(payload), zlib.crc32(payload), index))
            chunks.append(payload)
            index += 1
        data = b"".join(chunks)
        try:
            _write_all(self._file, data)
        except OSError:
            with contextlib.suppress(OSError):
                self._file.truncate(self.size)
                self._file.seek(self.size)
            raise
        self.size += len(data)
        self.written = index

    def save_cursor(self, delivered: int) -> None:
        """Everything before index ``delivered`` is stored (or safely elsewhere)."""
        os.pwrite(self._cursor_fd, _cursor_line(delivered), 0)

    def take_delivery(self, timeout: float) -> bool:
        """Become the journal's deliverer (the writer service gave it up or died):
        wait up to ``timeout`` seconds for the cursor's lock; True once held."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._cursor_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
                continue
            self.deliver_here = True
            return True

    def rotate(self, open_runs: list[str]) -> None:
        """Start a new file (everything in this one is delivered); the runs still open
        are carried in its header, so that a death later still ends them."""
        old = self.path
        self._close_files()
        self.path = self._open(open_runs)
        _remove(old)

    def _close_files(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._cursor_fd >= 0:
            os.close(self._cursor_fd)
            self._cursor_fd = -1

    def close(self, remove: bool) -> None:
        """Close; ``remove`` when everything in it was delivered."""
        self._close_files()
        if remove:
            _remove(self.path)

    def drop_in_child(self) -> None:
        """In a forked child: let go of the parent's files without unlocking them (the
        lock is the parent's: it is released only when the parent closes it too)."""
        self._close_files()


def _write_all(file: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written or 0 :]


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(str(path) + ".cursor").unlink(missing_ok=True)
    Path(str(path) + SERVICE_SUFFIX).unlink(missing_ok=True)


SERVICE_SUFFIX = ".service"
"""Beside a journal the writer service delivers: the service's pid, then ``held`` while
its backends have not started (see :mod:`.service_gate`); for doctor and waiting."""


def mark_delivered_by(path: Path, pid: int, *, held: bool = False) -> None:
    """Note beside the journal at ``path`` that writer service ``pid`` delivers it
    (``held``: it holds its backends' start back)."""
    with contextlib.suppress(OSError):  # only for doctor and waiting: never fatal
        Path(str(path) + SERVICE_SUFFIX).write_text(f"{pid} held" if held else str(pid))


def service_marker(path: Path) -> tuple[int, bool] | None:
    """The live writer service that delivers the journal at ``path``, as its marker
    says: its pid, and whether it holds back; None without one."""
    try:
        words = Path(str(path) + SERVICE_SUFFIX).read_text().split()
        pid, held = int(words[0]), words[1:] == ["held"]
    except (OSError, ValueError, IndexError):
        return None
    return (pid, held) if is_running(pid) else None


def service_of(path: Path) -> int | None:
    """The pid of the live writer service that delivers the journal at ``path``."""
    marker = service_marker(path)
    return marker[0] if marker is not None else None


def services_delivering(root: Path) -> list[int]:
    """The pids of live writer services still at work under ``root`` for processes that
    ended: delivering such a process's journal, or holding a spool they write (a
    script's service goes on storing after the script exited, and ends within its exit
    timeout). A journal whose process still runs is that process's business, as it
    is in process: nobody waits for it."""
    pids = set()
    folder = journal_dir(root)
    try:
        markers = list(folder.glob("*" + SERVICE_SUFFIX)) if folder.is_dir() else []
    except FileNotFoundError:
        markers = []  # removed meanwhile, with the last journal in it
    for marker in markers:
        journal = marker.with_suffix("")
        if not _writer_alive(journal):
            pids.add(service_of(journal))
    for spool in [*find_spools(root / ".spool"), *find_spools(root / ".spool" / "rejected")]:
        with contextlib.suppress(OSError, ValueError, KeyError):
            header = spool.header()
            if header.service and spool.being_written():
                pids.add(header.pid)
    return sorted(pid for pid in pids if pid is not None)


def _writer_alive(path: Path) -> bool:
    """Whether the process that writes the journal at ``path`` still runs, read from its
    header (not by its lock, which a probe would hold for a moment)."""
    try:
        return header_process_alive(JournalFile(path).header())
    except (OSError, ValueError, KeyError):
        return False  # gone, or not readable: not a live writer's


def wait_for_services(root: Path, timeout: float | None = None) -> bool:
    """Wait until no writer service delivers a journal under ``root``; False when
    ``timeout`` seconds passed first. A service stops within its
    ``MLHOOKS_EXIT_TIMEOUT`` after its process ended, spooling what it could not store."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while services_delivering(root):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def count_records(journal: JournalFile) -> int:
    """How many operations the journal holds (its first index included)."""
    end = 0
    for index, _, _ in journal.records():
        end = index + 1
    return end


# -- reading --------------------------------------------------------------------------------


@dataclass
class JournalHeader:
    backend: str
    options: dict[str, Any]
    host: str
    pid: int
    process_started: float
    created: float
    first: int
    open_runs: list[str] = field(default_factory=list)
    forked: bool = False
    """Whether the journal's process was forked from a tracking one."""

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.process_started))
        return f"process {self.pid} on {self.host} (started {started})"


class JournalFile:
    """A journal on disk, read to recover it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cursor_path = Path(str(path) + ".cursor")

    def header(self) -> JournalHeader:
        with open(self.path, "rb") as f:
            data = json.loads(f.readline())
        return JournalHeader(
            data["backend"],
            data["options"],
            data["host"],
            data["pid"],
            data["process_started"],
            data["created"],
            data["first"],
            list(data.get("open_runs", [])),
            bool(data.get("forked", False)),
        )

    def delivered(self) -> int:
        """The cursor: how many operations were delivered (0 without one)."""
        try:
            return int(self.cursor_path.read_bytes().split(b"\n", 1)[0].strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def records(
        self, offset: int | None = None, first_reading: bool = False
    ) -> Iterator[tuple[int, Operation, int]]:
        """(index, operation, offset after it) for each whole record, from ``offset``
        (the first record by default). A torn record ends the journal. Runs' starts
        keep ``RunInfo.new`` only on the ``first_reading`` (see :func:`.spool.decode`)."""
        with open(self.path, "rb") as f:
            if offset is None:
                f.readline()
            else:
                f.seek(offset)
            while True:
                head = f.read(_RECORD.size)
                if len(head) < _RECORD.size:
                    return
                length, crc, index = _RECORD.unpack(head)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return  # torn by a death half-way through the write
                yield index, _unpack(payload, first_reading), f.tell()

    def offset_of(self, index: int) -> int | None:
        """Where the record of operation ``index`` starts (None: not in the file)."""
        before = None
        for found, _, after in self.records():
            if found == index:
                return before if before is not None else self._first_offset()
            before = after
        return None

    def _first_offset(self) -> int:
        with open(self.path, "rb") as f:
            return len(f.readline())

    def remove(self) -> None:
        _remove(self.path)


def owner_alive(path: Path) -> bool:
    """Whether a live process holds the journal at ``path``."""
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def header_process_alive(header: JournalHeader) -> bool:
    """Whether the process that wrote ``header`` still runs on this host (the same pid
    and start time: not a later process that got its pid)."""
    if header.host != socket.gethostname():
        return False
    if not is_running(header.pid):
        return False
    started = process_started(header.pid)
    return not started or not header.process_started or abs(started - header.process_started) < 2


def find_journals(root: Path, backend: str | None = None) -> list[JournalFile]:
    """The journals under ``root``, oldest first (optionally of one backend)."""
    folder = journal_dir(root)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*" + JOURNAL_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            found.append((path.stat().st_mtime, path))
    journals = [JournalFile(path) for _, path in sorted(found)]
    if backend is not None:
        journals = [j for j in journals if _backend_of(j) == backend]
    return journals


def _backend_of(journal: JournalFile) -> str | None:
    try:
        return journal.header().backend
    except (OSError, ValueError, KeyError):
        return None


# -- recovery -------------------------------------------------------------------------------


@dataclass
class Recovered:
    """What :func:`recover` did with one dead process's journal."""

    path: Path
    header: JournalHeader
    delivered: int = 0
    killed: list[str] = field(default_factory=list)
    error: BaseException | None = None


def recover(
    journal: JournalFile,
    backend_for: Callable[[JournalHeader], Backend],
    reject: Callable[[Backend], Callable[[Operation, BaseException], None]] | None = None,
    applied: Callable[[Operation], None] | None = None,
) -> Recovered | None:
    """Deliver what a dead process's ``journal`` holds past its cursor, end the runs it
    left open KILLED, and remove it. None when its process still runs (or another
    recovery has it). On a failure the cursor keeps the place for the next try.

    ``backend_for`` builds the backend from the header; ``reject`` gives, for it, where
    operations it refuses for good go (the recovery goes on past them)."""
    from mlhooks.delivery.isolation import NotStoredYet, apply_isolating

    try:
        handle = open(journal.path, "rb")  # noqa: SIM115 - held for the lock
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its process lives, or another recovery runs
        if not journal.path.exists():
            return None  # recovered and removed meanwhile
        try:
            header = journal.header()
        except (OSError, ValueError, KeyError):
            return None
        if header_process_alive(header):
            return None  # its process let go of the lock (closed every file) but lives
        try:
            writer = CursorFile(journal.cursor_path)
        except BlockingIOError:
            return None  # a writer service delivers it
        result = Recovered(journal.path, header)
        try:
            backend = backend_for(header)
        except Exception as error:  # noqa: BLE001 - reported by the caller
            writer.close()
            result.error = error
            return result
        open_runs = dict.fromkeys(header.open_runs)
        cursor = max(journal.delivered(), header.first)
        on_reject = reject(backend) if reject is not None else None
        last_time = 0
        try:
            for index, op, _ in journal.records():
                if isinstance(op, StartRun):
                    open_runs[op.run.run_id] = None
                elif isinstance(op, EndRun):
                    open_runs.pop(op.run_id, None)
                if index < cursor:
                    continue
                if on_reject is None:
                    backend.apply(op)
                    if applied is not None:
                        applied(op)
                else:
                    try:
                        apply_isolating(backend, [op], on_reject, applied)
                    except NotStoredYet as failure:
                        raise failure.error from None
                writer.save(index + 1)
                result.delivered += 1
            last_time = int(journal.path.stat().st_mtime * 1000)
            for run_id in open_runs:
                backend.apply(EndRun(run_id, RunStatus.KILLED.value, last_time))
                result.killed.append(run_id)
            backend.flush()
        except Exception as error:  # noqa: BLE001 - the cursor keeps the place
            result.error = error
            return result
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                backend.close()
        journal.remove()
        return result


class CursorFile:
    """A journal's cursor, held (locked) by whoever delivers the journal: raises
    BlockingIOError while another process does."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(self._fd)
            raise

    def take_first(self) -> bool:
        """Whether this holder is the journal's first deliverer (the training process
        journals for the writer service and nothing read the journal yet); from now on
        no one else is. The first deliverer may trust that the runs the journal starts
        as new (``RunInfo.new``) exist in no store, and create them without looking
        for them first; a later one (after a service died) may find them stored."""
        first = os.pread(self._fd, 64, _CURSOR_WIDTH + 1).startswith(_FIRST)
        if first:
            os.ftruncate(self._fd, _CURSOR_WIDTH + 1)
        return first

    def save(self, delivered: int) -> None:
        if self._fd >= 0:
            os.pwrite(self._fd, _cursor_line(delivered), 0)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
