"""Snapshots of files handed to mlhooks, taken when they are reported.

The writer stores artifacts and checkpoints later, on its own thread; by then the
user (or Lightning's ``save_top_k``) may have deleted or rewritten the file. A
snapshot is a hard link where the filesystem allows it (instant, no copy, immune to
the original being deleted or replaced), else a copy.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from .backends.local import default_root


def staging_root() -> Path:
    return default_root() / ".staging"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def stage(path: str | os.PathLike[str]) -> str:
    """A snapshot of the file or directory ``path``; FileNotFoundError if it is gone."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"cannot log {str(source)!r}: no such file or directory")
    target = staging_root() / uuid.uuid4().hex / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(source), str(target))
    return str(target)
