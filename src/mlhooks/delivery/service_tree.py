"""One writer service per process tree: where a process finds the service it may use.

A training process that starts a writer service (see :mod:`.service_client`) has it
listen on an abstract Unix socket named after that process (its pid and start time,
so a later process with the same pid is another name). A process of the same tree
(a forked child, a ``multiprocessing`` or joblib/loky worker, a rank started with
``spawn``) that needs a service first tries its parent's: the address it inherited
(forked), then the addresses named after each of its ancestors, nearest first. It
attaches when the service answers, is its user's, and serves the same interpreter,
mlhooks, working directory and environment (but for the variables launchers set per
worker: thread counts, joblib's and loky's, torch.distributed's ranks); otherwise it
starts a service of its own. Linux only (abstract sockets, ``/proc``); elsewhere
every process starts its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
from typing import Any

from mlhooks.core.version import VERSION

DEPTH = 32
"""How many ancestors are asked at most."""

_PER_WORKER = frozenset(
    {
        "_",
        "OLDPWD",
        "PWD",
        "SHLVL",
        "PYTHONPATH",  # the service gets its starter's sys.path: compared as sys.path
        "CUDA_VISIBLE_DEVICES",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "ROLE_RANK",
        "ROLE_NAME",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_WORLD_SIZE",
        "ROLE_WORLD_SIZE",
        "ENABLE_IPC",
    }
)
_PER_WORKER_PREFIXES = ("_", "LOKY_", "JOBLIB_", "TORCHELASTIC_", "KMP_")
"""Also a library's own variables (``_MLFLOW_TELEMETRY_SESSION_ID``, set when MLflow is
imported, in the training process after its service started, or not at all)."""
_PER_WORKER_SUFFIXES = ("_NUM_THREADS", "_MAX_THREADS", "_MAXIMUM_THREADS")


def supported() -> bool:
    """Whether services can be shared here (abstract Unix sockets and ``/proc``)."""
    return sys.platform.startswith("linux")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def address_of(pid: int) -> str | None:
    """The address of the service that process ``pid`` started (None: no such process)."""
    fields = _stat(pid)
    if fields is None or len(fields) < 20:
        return None
    return f"\0mlhooks-service-{os.getuid()}-{pid}-{fields[19]}"  # field 22: start time


def own_address() -> str | None:
    return address_of(os.getpid()) if supported() else None


def ancestor_addresses() -> list[str]:
    """The addresses named after this process's ancestors, nearest first."""
    if not supported():
        return []
    found = []
    pid = os.getppid()
    for _ in range(DEPTH):
        if pid <= 1:
            break
        fields = _stat(pid)
        if fields is None:
            break
        address = address_of(pid)
        if address is not None:
            found.append(address)
        pid = int(fields[1])
    return found


def listen(address: str) -> socket.socket | None:
    """A socket listening at ``address``; None when that cannot be."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError:
        sock.close()
        return None
    return sock


def connect(address: str, timeout: float = 1.0) -> socket.socket | None:
    """A connection to the service at ``address``; None when nobody listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def peer(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of ``sock``."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", data)
    return pid, uid


def hello() -> dict[str, Any]:
    """What a process that attaches says of itself (see :func:`mismatch`)."""
    return {
        "op": "hello",
        "pid": os.getpid(),
        "executable": os.path.realpath(sys.executable),
        "version": VERSION,
        "cwd": os.getcwd(),
        "path": [p for p in sys.path if p],
        "env": environment_digest(),
    }


def mismatch(said: dict[str, Any]) -> str | None:
    """Why this service cannot serve the process that said ``said`` (None: it can):
    compared with what this process was started with."""
    if said.get("executable") != os.path.realpath(sys.executable):
        return "another Python"
    if said.get("version") != VERSION:
        return "another mlhooks"
    if said.get("cwd") != os.getcwd():
        return "another working directory"
    missing = [p for p in said.get("path", []) if p not in sys.path]
    if missing:
        return f"modules from elsewhere ({missing[0]})"
    if said.get("env") != _STARTED_WITH:
        return "another environment"
    return None


def environment_digest() -> str:
    """A digest of this process's environment, but for the variables launchers set
    per worker (the values themselves, credentials among them, are not sent)."""
    kept = sorted(
        (key, value)
        for key, value in os.environ.items()
        if key not in _PER_WORKER
        and not key.startswith(_PER_WORKER_PREFIXES)
        and not key.endswith(_PER_WORKER_SUFFIXES)
    )
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()


_STARTED_WITH = environment_digest()
"""This process's environment when it imported this module (the service does first
thing, before the libraries that set variables of their own)."""


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


__all__ = [
    "address_of",
    "ancestor_addresses",
    "close_quietly",
    "connect",
    "environment_digest",
    "hello",
    "listen",
    "mismatch",
    "own_address",
    "peer",
    "supported",
]
