"""Small file systems of a test's own, to fill up or turn read-only.

Where mounting is allowed (root, as on CI) a :class:`SmallDisk` is a real tmpfs of
1 MB: it fills up (``ENOSPC``) and turns read-only (``EROFS``, for root too) as a real
disk does. Elsewhere (a developer's account) it is a plain folder that the scripts,
which run as that same non-root user, cannot write once it is made read-only (``EACCES``);
a full disk cannot be made that way, so cases that need one skip, saying why. Each test
records which way ran as the ``disk`` property of its report (``--junitxml``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

FILL = """
import os


def fill_disk(folder):
    '''Take every free byte of the file system of ``folder`` (another process's
    files, say); free_disk(folder) gives them back.'''
    with open(os.path.join(folder, "filler"), "ab") as f:
        block = b"x" * 4096
        while True:
            try:
                f.write(block)
                f.flush()
            except OSError:
                break
        try:
            f.close()
        except OSError:
            pass


def free_disk(folder):
    os.remove(os.path.join(folder, "filler"))
"""
"""Code that defines, in a script, functions to fill a disk and free it again."""


def is_root() -> bool:
    return os.geteuid() == 0


class SmallDisk:
    """A 1 MB file system at ``path`` (a tmpfs as root; see the module docstring)."""

    def __init__(self, path: Path, size: str = "1m") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        if is_root():
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                # CI runs as root and must run every case: a refusal there is a failure.
                raise RuntimeError(f"mounting a tmpfs at {path} was refused: {done.stderr}")
            self.mounted = True

    @property
    def kind(self) -> str:
        return "tmpfs" if self.mounted else "unwritable folder"

    def need_full(self) -> None:
        """Skip the test unless this disk can really fill up (a tmpfs: root only)."""
        if not self.mounted:
            pytest.skip("a full disk needs a tmpfs mount, which needs root (as on CI)")

    def fill(self) -> None:
        """Take every free byte (a filler file), as another process would."""
        self.need_full()
        block = b"x" * 65536
        with open(self.path / "filler", "ab") as f:
            while True:
                try:
                    f.write(block)
                    f.flush()
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
            with contextlib.suppress(OSError):
                f.close()
        with contextlib.suppress(OSError):  # the last few bytes too
            with open(self.path / "filler", "ab", buffering=0) as f:
                while f.write(b"x"):
                    pass

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def read_only(self) -> None:
        """Nothing may be written any more (files open for writing must be closed)."""
        if self.mounted:
            self._mount("remount,ro")
        else:
            for folder in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
                folder.chmod(folder.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def writable(self) -> None:
        if self.mounted:
            self._mount("remount,rw")
        else:
            for folder in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
                folder.chmod(folder.stat().st_mode | stat.S_IWUSR)

    def files(self) -> dict[str, bytes]:
        """Every file on the disk but the filler: relative path -> content."""
        return {
            p.relative_to(self.path).as_posix(): p.read_bytes()
            for p in sorted(self.path.rglob("*"))
            if p.is_file() and p.name != "filler"
        }

    def release(self) -> None:
        if self.mounted:
            done = subprocess.run(["umount", str(self.path)], capture_output=True)
            if done.returncode != 0:  # a process of the test still holds a file there
                subprocess.run(["umount", "-l", str(self.path)], check=True)
            self.mounted = False
        else:
            self.writable()

    def _mount(self, options: str) -> None:
        subprocess.run(["mount", "-o", options, str(self.path)], check=True, capture_output=True)
