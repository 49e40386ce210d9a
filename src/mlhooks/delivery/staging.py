"""Snapshots of files handed to mlhooks, taken when they are reported.

The writer stores artifacts and checkpoints later, on its own thread; by then the
user (or Lightning's ``save_top_k``) may have deleted, replaced or rewritten the file
in place. So the file is copied when it is reported. (A hard link would be free, but
a file rewritten in place, as ``savefig`` and ``torch.save`` do, would change the
snapshot too.)

The staging area lives in the local store's root. When it cannot be written (a full
or read-only file system), a user's file is stored from where it is instead
(:func:`stage_or_keep`, one warning) rather than lost or raised into training.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from mlhooks.backends.base import LogArtifact, LogModel, Operation
from mlhooks.backends.local import default_root
from mlhooks.core import files
from mlhooks.core.errors import warn_once
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child


def staging_root() -> Path:
    return default_root() / ".staging"


_holders: dict[str, int] = {}
_lock = threading.Lock()


def stage(path: str | os.PathLike[str], holders: int = 1) -> str:
    """A snapshot of the file or directory ``path``; FileNotFoundError if it is gone,
    another OSError when the staging area cannot be written (nothing is left of a
    snapshot begun).

    The snapshot is deleted once ``holders`` backends have released it (see :func:`release`).
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"cannot log {str(source)!r}: no such file or directory")

    def copy(target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            _copy_folder(source, target)
        else:
            shutil.copy2(source, target)

    return _new_snapshot(source.name, copy, holders)


def _copy_folder(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target``: symlinks as what they point to,
    dangling ones skipped; a file that cannot be written raises its own OSError."""
    files.copy_tree(source, target, ignore_dangling_symlinks=True)


def stage_or_keep(path: str | os.PathLike[str], holders: int = 1) -> str:
    """:func:`stage`, or, when the staging area cannot be written (a full or read-only
    file system), the absolute path of ``path`` itself, with one warning: the file is
    then stored from where it is, as it is when the writer gets to it. A path that is
    not a snapshot is never deleted (see :func:`release`)."""
    try:
        return stage(path, holders)
    except FileNotFoundError:
        raise
    except OSError as error:
        warn_unwritable(error)
        return os.path.abspath(path)


def warn_unwritable(error: OSError) -> None:
    """One warning per kind of error that the staging area cannot be written."""
    warn_once(
        f"staging:{error.errno}",
        f"mlhooks: cannot write to {staging_root()} ({error.strerror or error}): files you "
        "log are stored from where they are (a change before they are stored is kept "
        "too) and the run context's files are not kept. Training is not affected.",
        stacklevel=4,
    )


def stage_files(name: str, files: Mapping[str, str], holders: int = 1) -> str:
    """A snapshot directory ``name`` holding ``files`` (file name -> text), written
    straight into the staging area: for artifacts mlhooks makes itself. An OSError (a
    full or read-only file system) leaves nothing behind."""

    def write(target: Path) -> None:
        target.mkdir(parents=True)
        for filename, text in files.items():
            (target / filename).write_text(text, encoding="utf-8")

    return _new_snapshot(name, write, holders)


def new_folder(name: str, holders: int = 1) -> str:
    """An empty snapshot folder ``name`` to write into, straight in the staging area:
    for what is saved in the background to be stored by path (a model's files), with
    no copy. An OSError (a full or read-only file system) leaves nothing behind."""
    return _new_snapshot(name, lambda target: target.mkdir(parents=True), holders)


def _new_snapshot(name: str, fill: Callable[[Path], None], holders: int) -> str:
    """The snapshot ``name`` in a folder of its own in the staging area, made by
    ``fill(target)`` and deleted once ``holders`` backends released it. Nothing is left
    of it when ``fill`` fails (an OSError: a full or read-only file system)."""
    target = staging_root() / _snapshot_name() / name
    try:
        fill(target)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    with _lock:
        _holders[str(target)] = holders
    return str(target)


def _snapshot_name() -> str:
    """``<pid>-<random>``: the process that took a snapshot is known from its name, so
    that what a dead process staged can go once its journal is recovered."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


class StoredSnapshots:
    """Snapshots of other (dead or finished) processes that a replay stored. They go at
    the end of the replay (:meth:`discard`), and only those that no spool or journal
    left to replay names: one snapshot can serve many runs (a run context is reused for
    a few seconds), so a later operation may still need it. (This process's own go
    through :func:`release`.)"""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: set[Path] = set()

    def stored(self, op: Operation) -> None:
        """``op`` was stored: the snapshot it names may go."""
        path = (
            op.local_path
            if isinstance(op, LogArtifact)
            else op.model.path
            if isinstance(op, LogModel)
            else None
        )
        if path is None or is_snapshot(path):
            return
        folder = Path(path).parent
        if folder.parent.resolve() == (self.root / ".staging").resolve():
            self.folders.add(folder)

    def discard(self) -> None:
        """Remove the stored snapshots that nothing left to replay names."""
        if not self.folders:
            return
        spools = self.root / ".spool"
        pending = [
            *spools.glob("*.spool.jsonl"),
            *spools.glob("rejected/*.spool.jsonl"),
            *(self.root / ".journal").glob("*.journal"),
        ]
        named = b"".join(_read(path) for path in pending)
        for folder in self.folders:
            if f"/{folder.name}/".encode() not in named:
                shutil.rmtree(folder, ignore_errors=True)
        self.folders.clear()
        with contextlib.suppress(OSError):
            (self.root / ".staging").rmdir()  # only when empty


def discard_process_snapshots(root: Path, pid: int, keep: Iterable[Path]) -> None:
    """Remove the snapshots process ``pid`` (dead) staged under ``root``, but those
    that a file in ``keep`` (its spools) still names."""
    folder = root / ".staging"
    mine = list(folder.glob(f"{pid}-*")) if folder.is_dir() else []
    if not mine:
        return
    named = b"".join(_read(path) for path in keep)
    for snapshot in mine:
        if f"/{snapshot.name}/".encode() not in named:
            shutil.rmtree(snapshot, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def is_snapshot(path: str) -> bool:
    with _lock:
        return path in _holders


def hold(path: str, more: int) -> None:
    """Let ``more`` further backends release ``path`` before it goes."""
    with _lock:
        if path in _holders:
            _holders[path] += more


_elsewhere: Callable[[str], None] | None = None


def release_elsewhere(relay: Callable[[str], None] | None) -> None:
    """In the writer service: releases of snapshots that are not this process's go to
    ``relay`` (the training process, which holds them, or the service's clean-up)."""
    global _elsewhere
    _elsewhere = relay


def release(path: str) -> None:
    """One holder is done with the snapshot ``path``; the last one deletes it. Paths
    that are not snapshots of this process (a spool replayed by `mlhooks sync`) stay."""
    with _lock:
        left = _holders.get(path)
        if left is None:
            relay = _elsewhere
            if relay is not None:
                relay(path)
            return
        if left > 1:
            _holders[path] = left - 1
            return
        del _holders[path]
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def release_snapshot(op: Operation) -> None:
    """A backend is done with ``op``: release the snapshot it refers to, if any."""
    if isinstance(op, LogArtifact):
        release(op.local_path)
    elif isinstance(op, LogModel) and op.model.path is not None:
        release(op.model.path)


def remove_empty_folders() -> None:
    """At exit: the staging folder, and the local store's root when mlhooks made it
    only for staging, go once they are empty (a process that wrote only to MLflow
    leaves nothing in the working folder). Snapshots still held, such as those a spool
    names, stay."""
    folder = staging_root()
    for snapshot in list(folder.glob("*")) if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            snapshot.rmdir()  # only when empty
    for empty in (folder, folder.parent):
        with contextlib.suppress(OSError):
            empty.rmdir()


def _forget_in_child() -> None:
    """A forked child holds none of its parent's snapshots: the parent deletes each
    once its own backends stored it (a child that releases one changes nothing)."""
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _holders.clear()


at_exit(remove_empty_folders, Stage.FILES)
in_forked_child(_forget_in_child, Stage.FILES)
