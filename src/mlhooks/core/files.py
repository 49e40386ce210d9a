"""Writing files whole or not at all, on disks that fill up or turn read-only.

A write that fails half-way (``ENOSPC``, ``EROFS``, ``EDQUOT``) leaves no partial line
or file behind: the caller may write the same thing again later without storing any
of it twice, and a reader never finds a torn line in the middle of a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def append_whole(fd: int, text: str, *, sync: bool) -> int:
    """Append ``text`` to the file open as ``fd`` (opened with ``O_APPEND``), straight
    to the operating system (no buffer of ours keeps a part of it), and fsync it when
    ``sync``; returns the bytes appended. On failure the file is cut back to its size
    before and the error raised."""
    data = text.encode("utf-8")
    written = 0
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write: the disk is filling up
            written += os.write(fd, memoryview(data)[written:])
        if sync:
            os.fsync(fd)
    except BaseException:
        _cut_back(fd, written)
        raise
    return written


def append_all(parts: list[tuple[int, str]], *, sync: bool) -> None:
    """Append each ``(fd, text)`` of ``parts`` with :func:`append_whole`: all or none.
    When one fails, the files already appended to are cut back too (an operation
    written to several files is then retried whole, never stored twice in part)."""
    done: list[tuple[int, int]] = []
    try:
        for fd, text in parts:
            done.append((fd, append_whole(fd, text, sync=sync)))
    except BaseException:
        for fd, count in done:
            _cut_back(fd, count)
        raise


def _cut_back(fd: int, count: int) -> None:
    """Take the last ``count`` bytes appended to ``fd`` back (this process is the
    file's only writer)."""
    if count:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, os.fstat(fd).st_size - count)


def open_append(path: Path) -> int:
    """A descriptor that appends to ``path`` (created if missing), for :func:`append_whole`."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def write_whole(path: Path, data: str | bytes) -> None:
    """Write ``path`` atomically and durably: a temporary file beside it, fsynced, then
    renamed over it. On failure the temporary file goes and ``path`` is as it was."""
    tmp = _beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_whole(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy the file ``source`` to ``target`` (data and metadata) through a temporary
    file beside it: ``target`` is the whole copy or as it was. The signature of
    ``shutil.copy2``, so that ``shutil.copytree(copy_function=copy_whole)`` works."""
    destination = Path(target)
    tmp = _beside(destination)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_folder_whole(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy the folder ``source`` to ``target`` through a temporary folder beside it:
    ``target`` becomes the whole copy (replacing what was there), never a part of one."""
    destination = Path(target)
    tmp = _beside(destination)
    try:
        copy_tree(source, tmp)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_tree(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    ignore_dangling_symlinks: bool = False,
) -> None:
    """``shutil.copytree``, but a file that cannot be written raises its own OSError (a
    full disk: ``ENOSPC``), not copytree's list of every failure as text."""
    failures: list[OSError] = []

    def copy(src: str, dst: str) -> object:
        try:
            return shutil.copy2(src, dst)
        except OSError as error:
            failures.append(error)
            raise

    try:
        shutil.copytree(
            source, target, ignore_dangling_symlinks=ignore_dangling_symlinks, copy_function=copy
        )
    except shutil.Error:
        if failures:
            raise failures[0] from None
        raise


def _beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
