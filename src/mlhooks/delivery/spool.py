"""Operations on disk: JSON encoding, spool files and their replay.

A spool file holds the operations a backend could not take, one JSON object per line,
after a header naming the backend and how to rebuild it. A sidecar file counts the
lines already replayed, so that a replay that stops half-way resumes where it stopped
and never stores an operation twice.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pickle
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlhooks.backends.base import (
    Backend,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    Operation,
    StartRun,
)
from mlhooks.core.errors import warn_once
from mlhooks.core.files import append_whole, open_append
from mlhooks.core.processes import is_writer_service
from mlhooks.core.types import DatasetInfo, ModelArtifact, RunInfo
from mlhooks.delivery.isolation import NotStoredYet, apply_isolating

SPOOL_SUFFIX = ".spool.jsonl"
_CURSOR_WIDTH = 20
"""Digits of a replay cursor: written at full width once, then in place."""
SAMPLE_INPUT = "sample_input"
"""The model metadata that holds a few rows of input (see ``FitSession.log_model``)."""


def encode(op: Operation) -> dict[str, Any]:
    """A JSON-ready dict for ``op``."""
    if isinstance(op, LogBatch):
        return {
            "op": "batch",
            "run_id": op.run_id,
            "metrics": [[k, _float_out(v), s, t] for k, v, s, t in op.metrics],
            "params": op.params,
            "tags": op.tags,
        }
    if isinstance(op, StartRun):
        encoded: dict[str, Any] = {"op": "start", "run": op.run.to_dict()}
        if op.pinned is not None:
            encoded["pinned"] = op.pinned
        if op.run.new:
            encoded["new"] = True  # read back as such only by the journal's first reader
        return encoded
    if isinstance(op, EndRun):
        return {"op": "end", "run_id": op.run_id, "status": op.status, "end_time": op.end_time}
    if isinstance(op, LogArtifact):
        return {
            "op": "artifact",
            "run_id": op.run_id,
            "local_path": op.local_path,
            "artifact_path": op.artifact_path,
        }
    if isinstance(op, LogDataset):
        return {"op": "dataset", "run_id": op.run_id, "dataset": op.dataset.to_dict()}
    if isinstance(op, LogModel):
        model = op.model
        return {
            "op": "model",
            "run_id": op.run_id,
            "name": model.name,
            "flavor": model.flavor,
            "format": model.format,
            "path": model.path,
            "payload": base64.b64encode(model.payload).decode() if model.payload else None,
            **_metadata_out(model.metadata),
        }
    raise TypeError(f"cannot encode operation {op!r}")


def decode(data: dict[str, Any], first_reading: bool = False) -> Operation:
    """The operation that :func:`encode` turned into ``data``. A run's start keeps
    ``RunInfo.new`` only on the ``first_reading`` of a journal, by a reader that knows
    nothing delivered any of it before (see :meth:`.journal.CursorFile.take_first`):
    anywhere else the run may have been created already, and is looked for."""
    kind = data["op"]
    if kind == "batch":
        metrics = [(k, _float_in(v), s, t) for k, v, s, t in data["metrics"]]
        return LogBatch(data["run_id"], metrics, data["params"], data["tags"])
    if kind == "start":
        # Starts journaled or spooled before backends pinned anything have no "pinned".
        run = RunInfo.from_dict(data["run"])
        run.new = first_reading and bool(data.get("new"))
        return StartRun(run, data.get("pinned"))
    if kind == "end":
        return EndRun(data["run_id"], data["status"], data["end_time"])
    if kind == "artifact":
        return LogArtifact(data["run_id"], data["local_path"], data["artifact_path"])
    if kind == "dataset":
        return LogDataset(data["run_id"], DatasetInfo.from_dict(data["dataset"]))
    if kind == "model":
        payload = base64.b64decode(data["payload"]) if data["payload"] else None
        model = ModelArtifact(
            name=data["name"],
            flavor=data["flavor"],
            payload=payload,
            path=data["path"],
            format=data["format"],
            metadata=_metadata_in(data),
        )
        return LogModel(data["run_id"], model)
    raise ValueError(f"unknown operation kind {kind!r}")


def _metadata_out(metadata: dict[str, Any]) -> dict[str, Any]:
    """A model's metadata for JSON. Values JSON cannot hold are kept as their text (as
    the local store keeps them), but the sample input, which backends use as data (a
    signature, an input example), is pickled, so that a replay gets the array or
    DataFrame back rather than its text."""
    sample = metadata.get(SAMPLE_INPUT)
    if sample is None or _json_exact(sample):
        return {"metadata": metadata}
    try:
        pickled = pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - then as text, like the other values
        return {"metadata": metadata}
    rest = {k: v for k, v in metadata.items() if k != SAMPLE_INPUT}
    return {"metadata": rest, "sample_input_pickle": base64.b64encode(pickled).decode()}


def _metadata_in(data: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = dict(data["metadata"])
    pickled = data.get("sample_input_pickle")
    if pickled:
        try:
            metadata[SAMPLE_INPUT] = pickle.loads(base64.b64decode(pickled))
        except Exception:  # noqa: BLE001 - pandas missing here, say: the model still goes
            warn_once(
                "spool-sample-input",
                "mlhooks: the sample input of a spooled model cannot be read in this "
                "process; the model is stored without it (and without a signature)",
            )
    return metadata


def _json_exact(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_json_exact(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_exact(v) for k, v in value.items())
    return False


def _float_out(value: float) -> float | str:
    # JSON has no NaN or infinity; keep them as strings so they survive exactly.
    return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)


def _float_in(value: float | str) -> float:
    return float(value)


def _dumps_with(op: Operation, reason: str) -> str:
    return json.dumps({**encode(op), "reason": reason}, separators=(",", ":"), default=str)


def dumps(op: Operation) -> str:
    # default=str: a metadata value JSON cannot hold (a datetime, say) is kept as text
    return json.dumps(encode(op), separators=(",", ":"), default=str)


@dataclass
class SpoolHeader:
    backend: str
    options: dict[str, Any]
    created: float
    pid: int
    host: str = ""
    service: bool = False
    """Written by a writer service (which ends within its exit timeout)."""


class SpoolWriter:
    """Appends operations for one backend to a spool file, durably.

    Each append lands whole or not at all: when the disk is full or read-only, the
    file is cut back to where it was and the error raised, so that the caller may try
    the same operations again without storing any of them twice. A spool file whose
    header cannot be written is removed, never left empty."""

    def __init__(self, directory: Path, backend: Backend) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.header = {
            "backend": backend.name,
            "options": backend.spec(),
            "created": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        if is_writer_service():
            self.header["service"] = True  # sync waits for it, not skipping its spool
        self.count = 0
        self._open_new_file()

    def _open_new_file(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = f"{self.header['backend']}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        path = self.directory / (name + SPOOL_SUFFIX)
        fd = open_append(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while open: "still written"
            append_whole(fd, json.dumps(self.header) + "\n", sync=True)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self.path, self._fd = path, fd

    def append(self, ops: Iterable[Operation], reason: str | None = None) -> None:
        """Append ``ops`` durably; ``reason`` (why a backend refused them) is kept with
        each, for ``mlhooks sync --rejected``."""
        if self._fd < 0:  # closed (its lane ended): carry on in a new file
            self._open_new_file()
        elif os.fstat(self._fd).st_nlink == 0:
            # replayed and removed by `mlhooks sync --force`: carry on in a new file
            os.close(self._fd)
            self._open_new_file()
        if reason is None:
            lines = [dumps(op) + "\n" for op in ops]
        else:
            lines = [_dumps_with(op, reason) + "\n" for op in ops]
        append_whole(self._fd, "".join(lines), sync=True)
        self.count += len(lines)

    def close(self) -> None:
        """Close the file (its lock goes with it: ``mlhooks sync`` may replay it now);
        once, however often it is called."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class SpoolFile:
    """A spool file on disk, read for replay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cursor_path = path.with_name(path.name + ".done")
        self._cursor_fd: int | None = None

    def header(self) -> SpoolHeader:
        with open(self.path, encoding="utf-8") as f:
            data = json.loads(f.readline())
        return SpoolHeader(
            data["backend"],
            data["options"],
            data["created"],
            data["pid"],
            data.get("host", ""),
            bool(data.get("service", False)),
        )

    def being_written(self) -> bool:
        """Whether a process still writes this spool (it replays the spool itself once
        its backend is back): a writer holds a lock on the file while it has it open,
        which ends when it closes the file or its process ends (a spool from another
        host is taken as done)."""
        if self.header().host not in ("", socket.gethostname()):
            return False
        try:
            with open(self.path, "rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True  # its writer holds it
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False  # replayed and removed meanwhile

    def replayed(self) -> int:
        """How many operations were already replayed."""
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def pending(self) -> Iterator[tuple[int, Operation]]:
        """(line number, operation) for every operation not yet replayed."""
        for number, op, _ in self.entries():
            yield number, op

    def entries(self) -> Iterator[tuple[int, Operation, str | None]]:
        """(line number, operation, why it was rejected) for every operation not yet
        replayed. A line that is not an operation is skipped with a warning."""
        done = self.replayed()
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.readline()  # header
            for number, line in enumerate(f, start=1):
                if number <= done:
                    continue
                if not line.endswith("\n"):
                    break  # torn last line of a killed writer: never fully written
                try:
                    data = json.loads(line)
                    op = decode(data)
                except (ValueError, KeyError, TypeError) as error:
                    warn_once(
                        f"spool-line:{self.path}:{number}",
                        f"mlhooks: line {number} of {self.path} is not an operation "
                        f"({type(error).__name__}); skipped",
                    )
                    continue
                yield number, op, data.get("reason")

    def mark_replayed(self, number: int) -> None:
        """Record that the first ``number`` operations were replayed. The cursor file
        is rewritten in place, in the space it already holds (see :meth:`open_cursor`),
        so that a disk that filled meanwhile cannot stop the replay between storing an
        operation and recording it (which would store it again next time)."""
        fd = self._cursor_fd
        if fd is None:
            self.open_cursor()
            fd = self._cursor_fd
            assert fd is not None
        os.pwrite(fd, f"{number:>{_CURSOR_WIDTH}}".encode(), 0)

    def open_cursor(self) -> None:
        """Open the cursor file for :meth:`mark_replayed`, writing its current value
        at full width: OSError when the disk is full or read-only, before a replay
        stores anything (and with no empty cursor file left)."""
        if self._cursor_fd is not None:
            return
        done = self.replayed()
        existed = self.cursor_path.exists()
        fd = os.open(self.cursor_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, f"{done:>{_CURSOR_WIDTH}}".encode(), 0)
        except BaseException:
            os.close(fd)
            if not existed:
                self.cursor_path.unlink(missing_ok=True)
            raise
        self._cursor_fd = fd

    def close_cursor(self) -> None:
        if self._cursor_fd is not None:
            os.close(self._cursor_fd)
            self._cursor_fd = None

    def append(self, ops: Iterable[Operation]) -> None:
        """Add ``ops`` at the end of this spool, durably (what is left of a replay)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            append_whole(fd, "".join(dumps(op) + "\n" for op in ops), sync=True)
        finally:
            os.close(fd)

    def count_pending(self) -> int:
        return sum(1 for _ in self.pending())

    def remove(self) -> None:
        self.close_cursor()
        self.path.unlink(missing_ok=True)
        self.cursor_path.unlink(missing_ok=True)


def replay(
    spool: SpoolFile,
    backend: Backend,
    reject: Callable[[Operation, BaseException], None] | None = None,
    applied: Callable[[Operation], None] | None = None,
) -> int:
    """Apply every pending operation of ``spool`` to ``backend``, in order; returns how
    many were applied, and removes the spool when all were.

    An operation the backend rejects for good goes to ``reject`` (when given) and the
    replay goes on; any other failure stops it, and the cursor keeps the position.
    ``applied`` is called with each operation stored.
    """
    spool.open_cursor()  # a full disk stops the replay here, before anything is stored
    try:
        count = 0
        for number, op in spool.pending():
            if reject is None:
                backend.apply(op)
                if applied is not None:
                    applied(op)
            else:
                try:
                    apply_isolating(backend, [op], reject, applied)
                except NotStoredYet as failure:
                    if failure.remaining != [op]:
                        # Part of a split batch was stored: only the rest is replayed
                        # later (at the end of this spool), so that nothing is stored twice.
                        spool.append(failure.remaining)
                        spool.mark_replayed(number)
                    raise failure.error from None
            spool.mark_replayed(number)
            count += 1
        backend.flush()
    finally:
        spool.close_cursor()
    spool.remove()
    return count


def find_spools(root: Path, backend: str | None = None) -> list[SpoolFile]:
    """Spool files under ``root``, oldest first, optionally for one backend name.
    (``rejected/`` holds operations a backend refused; name it as ``root`` to see them.)"""
    if not root.exists():
        return []
    found: list[tuple[float, Path]] = []
    for path in root.glob("*" + SPOOL_SUFFIX):
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue  # replayed and removed meanwhile
    spools = [SpoolFile(path) for _, path in sorted(found)]
    readable = [s for s in spools if _readable(s)]
    if backend is not None:
        readable = [s for s in readable if s.header().backend == backend]
    return readable


def _readable(spool: SpoolFile) -> bool:
    """Whether ``spool`` starts with a spool header; an empty, torn or foreign file
    gets one warning and is left alone."""
    try:
        spool.header()
        return True
    except FileNotFoundError:
        return False  # replayed and removed meanwhile
    except (OSError, ValueError, KeyError, TypeError) as error:
        warn_once(
            f"spool-file:{spool.path}",
            f"mlhooks: {spool.path} is not a spool file ({type(error).__name__}: {error}); skipped",
        )
        return False
