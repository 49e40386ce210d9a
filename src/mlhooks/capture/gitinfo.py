"""What git knows about the working tree a run started in, mostly without running git.

The commit, branch and remote URL are read from the ``.git`` files directly (``HEAD``,
refs, ``packed-refs``, ``config``; linked worktrees and submodules, whose ``.git`` is a
file, included). Only the dirty flag and the diff need the ``git`` program: it is run
when a ``.git`` was found and ``git`` is on the PATH, with a 5-second timeout and
``GIT_OPTIONAL_LOCKS=0`` (so that it never takes the index lock from a user's git).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlhooks.core.redaction import strip_url_credentials

GIT_TIMEOUT = 5.0
MAX_DIFF_BYTES = 5_000_000
_SECTION = re.compile(r'^\s*\[\s*([\w.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]')
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass
class GitInfo:
    root: Path
    commit: str | None = None
    branch: str | None = None
    """None for a detached HEAD."""
    remote_url: str | None = None
    """The ``origin`` remote (else the first one), credentials stripped."""
    dirty: bool | None = None
    """Tracked files changed since the commit; None when git could not be run."""
    diff: str | None = None
    """``git diff HEAD`` when dirty (cut at 5 MB)."""


def find_repository(start: Path) -> tuple[Path, Path] | None:
    """(working tree root, git directory) of the repository holding ``start``."""
    for folder in [start, *start.parents]:
        dot_git = folder / ".git"
        try:
            if dot_git.is_dir():
                return folder, dot_git
            if dot_git.is_file():
                text = dot_git.read_text(errors="replace").strip()
                if text.startswith("gitdir:"):
                    git_dir = Path(text[len("gitdir:") :].strip())
                    return folder, git_dir if git_dir.is_absolute() else folder / git_dir
        except OSError:
            return None
    return None


def read(start: Path, *, with_status: bool = True, with_diff: bool = True) -> GitInfo | None:
    """What git knows about ``start``'s repository, or None outside any repository."""
    found = find_repository(start.resolve())
    if found is None:
        return None
    root, git_dir = found
    common = _common_dir(git_dir)
    info = GitInfo(root=root)
    info.commit, info.branch = _head(git_dir, common)
    url = _remote_url(common / "config")
    info.remote_url = strip_url_credentials(url) if url else None
    if with_status and info.commit is not None:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        info.dirty = None if status is None else bool(status.strip())
        if info.dirty and with_diff:
            diff = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff")
            if diff is not None:
                info.diff = diff[:MAX_DIFF_BYTES]
    return info


def _common_dir(git_dir: Path) -> Path:
    """Where refs and config live (a linked worktree shares its main repository's)."""
    pointer = git_dir / "commondir"
    if pointer.is_file():
        common = Path(pointer.read_text().strip())
        return common if common.is_absolute() else (git_dir / common).resolve()
    return git_dir


def _head(git_dir: Path, common: Path) -> tuple[str | None, str | None]:
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None, None
    if not head.startswith("ref:"):
        return (head if _SHA.match(head) else None), None
    ref = head[len("ref:") :].strip()
    branch = ref.removeprefix("refs/heads/")
    return _resolve_ref(git_dir, common, ref), branch


def _resolve_ref(git_dir: Path, common: Path, ref: str, depth: int = 0) -> str | None:
    """The commit ``ref`` points to: a loose ref file, else ``packed-refs``."""
    if depth > 5:
        return None
    for base in (git_dir, common):
        path = base / ref
        if path.is_file():
            text = path.read_text().strip()
            if text.startswith("ref:"):
                return _resolve_ref(git_dir, common, text[4:].strip(), depth + 1)
            return text if _SHA.match(text) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(errors="replace").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref and _SHA.match(sha):
                return sha
    return None


def _remote_url(config: Path) -> str | None:
    """The URL of remote ``origin`` (else of the first remote) in a git config file."""
    try:
        lines = config.read_text(errors="replace").splitlines()
    except OSError:
        return None
    urls: dict[str, str] = {}
    section: tuple[str, str | None] | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section = (header[1].lower(), header[2])
            continue
        key, equals, value = line.partition("=")
        if (
            equals
            and section is not None
            and section[0] == "remote"
            and section[1] is not None
            and key.strip().lower() == "url"
        ):
            urls.setdefault(section[1], value.strip().strip('"'))
    return urls.get("origin") or next(iter(urls.values()), None)


def _git(root: Path, *args: str) -> str | None:
    """Output of ``git args`` in ``root``, or None (no git, an error, the timeout)."""
    program = shutil.which("git")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "-C", str(root), *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None
