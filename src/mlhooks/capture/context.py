"""Run context: where a run came from, captured when it starts.

Each part can be switched off (``start_run(log_context=...)``,
``autolog(log_context=...)``, ``MLHOOKS_LOG_CONTEXT``): ``True``/``False`` for all or
none, or the names of the parts to keep:

* ``git``: commit, branch, remote URL (credentials stripped), dirty flag;
* ``git_diff``: the uncommitted diff as the artifact ``mlhooks/git.diff`` when dirty;
* ``entry_point``: the script or notebook and its (redacted) command line;
* ``platform``: Python version, platform, host name, user;
* ``versions``: mlhooks, its plugins and the frameworks in play;
* ``requirements``: every installed distribution, from their metadata (computed once
  per process), in the artifact;
* ``seeds``: seeds that can be observed (Lightning's ``seed_everything``,
  ``torch.initial_seed()``, ``PYTHONHASHSEED``).

Tags use MLflow's own names where MLflow has one (``mlflow.source.*``,
``mlflow.user``), else ``mlhooks.capture.context.*``; everything, requirements included, also
goes to the artifact ``mlhooks/context.json``. ``docs/context.md`` lists every field.

The capture runs on a background thread, so that the training thread only starts it;
the run's end waits for it (at most :data:`CAPTURE_TIMEOUT` seconds). The one slow
part, the list of installed distributions (read once per process), waits until no
tracked fit is running, so that it never competes with training for the GIL; the
artifact is stored without it first, then again in full. Nested runs,
which hyper-parameter searches create by the hundred, capture nothing themselves: they
get the source tags of their parent's capture (a nested run that ends before that
capture is done waits for it, once).
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import platform
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from mlhooks.capture import gitinfo
from mlhooks.core import activity, settings
from mlhooks.core.errors import report_background_error
from mlhooks.core.host import ENTRY_POINT_GROUP, host
from mlhooks.core.redaction import redact_argv, redact_text
from mlhooks.core.shutdown import Stage, at_exit, in_forked_child
from mlhooks.core.types import RunInfo
from mlhooks.delivery import staging
from mlhooks.delivery.recorder import recorder

PARTS = ("git", "git_diff", "entry_point", "platform", "versions", "requirements", "seeds")
CAPTURE_TIMEOUT = 10.0
REQUIREMENTS_DEFER = 300.0
"""Longest the list of installed distributions waits for running fits to end."""
GIT_REUSE_SECONDS = 5.0
ARTIFACT_DIR = "mlhooks"
SOURCE_TAGS = (
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
    "mlflow.source.git.repoURL",
    "mlflow.user",
)
"""What a nested run inherits from its parent's capture."""
_KNOWN_LIBRARIES = (
    "numpy",
    "pandas",
    "scipy",
    "sklearn",
    "xgboost",
    "torch",
    "lightning",
    "pytorch_lightning",
    "mlflow",
)
"""Reported with the integrations' frameworks when imported."""


def resolve_parts(option: bool | str | Iterable[str] | None) -> frozenset[str]:
    """The parts to capture: ``option``, else ``MLHOOKS_LOG_CONTEXT``, else all.

    ``True``/``False``, or part names (a list, or a comma-separated string).
    """
    if option is None:
        raw = settings.get("MLHOOKS_LOG_CONTEXT")
        if raw is None:
            return frozenset(PARTS)
        option = raw
    if isinstance(option, bool):
        return frozenset(PARTS) if option else frozenset()
    if isinstance(option, str):
        lowered = option.strip().lower()
        if lowered in ("1", "true", "yes", "on", "all"):
            return frozenset(PARTS)
        if lowered in ("0", "false", "no", "off", "", "none"):
            return frozenset()
        option = [p.strip() for p in lowered.split(",") if p.strip()]
    parts = frozenset(option)
    unknown = sorted(parts - set(PARTS))
    if unknown:
        raise ValueError(
            f"unknown run context part(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(PARTS)}"
        )
    return parts


# -- the parts ------------------------------------------------------------------------------


def entry_point() -> dict[str, Any]:
    """The script or notebook that is running and its command line."""
    main = sys.modules.get("__main__")
    notebook = _notebook_path(main)
    script = getattr(main, "__file__", None)
    if notebook is not None:
        name, kind = notebook, "NOTEBOOK"
    elif isinstance(script, str) and os.path.isfile(script):
        name, kind = os.path.abspath(script), "LOCAL"
    elif isinstance(script, str):
        name, kind = script, "LOCAL"
    else:
        name, kind = (sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>"), "LOCAL"
    return {"name": name, "type": kind, "argv": redact_argv(sys.argv), "cwd": os.getcwd()}


def _notebook_path(main: Any) -> str | None:
    if "ipykernel" not in sys.modules:
        return None
    for candidate in (
        getattr(main, "__vsc_ipynb_file__", None),  # VS Code
        os.environ.get("JPY_SESSION_NAME"),  # Jupyter Server 2
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "<notebook>"


def platform_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "user": _user(),
        "cpu_count": os.cpu_count(),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of mlhooks, its plugins and the frameworks imported in this process."""
    from mlhooks.core.version import VERSION as __version__

    found = {"mlhooks": __version__}
    found.update(_plugin_versions())
    for integration in host.integrations.values():
        if integration.modules[0].split(".")[0] in sys.modules:
            version = integration.installed_version()
            if version:
                found[integration.name] = version
    for name in _KNOWN_LIBRARIES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            found.setdefault(name, version)
    return found


@cache
def _plugin_versions() -> dict[str, str]:
    """The distributions offering mlhooks plugins, with their versions: those found as
    the plugins were loaded (else scanned for), their versions read from the names of
    their metadata folders as :func:`requirements` does, the metadata parsed only where
    a name carries none (its e-mail parser holds the interpreter lock for milliseconds
    per distribution)."""
    found: dict[str, str] = {}
    if host.loaded:
        dists = list(host.offered_by)  # found as the plugins were loaded
    else:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        dists = [point.dist for point in points if point.dist is not None]
    for dist in dists:
        folder = getattr(dist, "_path", None)
        pin = _pin_of(folder.name, str(folder)) if isinstance(folder, Path) else None
        if pin is None:
            pin = dist.metadata["Name"], dist.version
        found[pin[0]] = pin[1]
    return found


@cache
def requirements() -> tuple[str, ...]:
    """``name==version`` of every installed distribution (read once per process).

    Read from the names of the ``.dist-info``/``.egg-info`` folders on ``sys.path``
    (``<name>-<version>.dist-info``, as installers write them): a few milliseconds,
    where parsing every distribution's metadata takes 100 ms or more of the
    interpreter lock. A folder whose name carries no version is read in full."""
    pins: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            pin = _pin_of(entry.name, entry.path)
            if pin is not None:
                pins.setdefault(_canonical(pin[0]), f"{pin[0]}=={pin[1]}")  # first on the path
    return tuple(sorted(pins.values(), key=str.lower))


def _pin_of(name: str, path: str) -> tuple[str, str] | None:
    """(project, version) of a distribution's metadata folder, or None."""
    for suffix in (".dist-info", ".egg-info"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        return None
    project, _, rest = stem.partition("-")
    version = rest.split("-py", 1)[0]  # an egg's name ends with its Python version
    if not project or not version:
        try:
            dist = importlib.metadata.PathDistribution(Path(path))
            project, version = dist.metadata["Name"] or "", dist.version or ""
        except Exception:  # noqa: BLE001 - an unreadable folder is not a requirement
            return None
        if not project or not version:
            return None
    return project.replace("_", "-"), version


def _canonical(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def seeds() -> dict[str, str]:
    """Seeds that can be observed from outside the code that set them."""
    found = {}
    for variable, name in (("PL_GLOBAL_SEED", "lightning"), ("PYTHONHASHSEED", "pythonhash")):
        value = os.environ.get(variable)
        if value:
            found[name] = value
    torch = sys.modules.get("torch")
    initial_seed = getattr(torch, "initial_seed", None)
    if callable(initial_seed):
        found["torch"] = str(initial_seed())
    return found


# -- capture --------------------------------------------------------------------------------


def collect(parts: frozenset[str]) -> tuple[dict[str, str], dict[str, Any], str | None]:
    """(tags, the JSON document, the git diff or None) for the ``parts`` asked for."""
    tags: dict[str, str] = {}
    document: dict[str, Any] = {}
    diff = None
    if "entry_point" in parts:
        entry = document["entry_point"] = entry_point()
        tags["mlflow.source.name"] = entry["name"]
        tags["mlflow.source.type"] = entry["type"]
        tags["mlhooks.context.argv"] = shlex.join(entry["argv"])
    if "git" in parts or "git_diff" in parts:
        start = Path(document.get("entry_point", {}).get("name", ""))
        folder = start.parent if start.is_file() else Path.cwd()
        git = _read_git(folder, "git" in parts, "git_diff" in parts)
        if git is None:
            document["git"] = None
        elif "git" in parts:
            document["git"] = {
                "root": str(git.root),
                "commit": git.commit,
                "branch": git.branch,
                "remote_url": git.remote_url,
                "dirty": git.dirty,
            }
            for tag, value in (
                ("mlflow.source.git.commit", git.commit),
                ("mlflow.source.git.branch", git.branch),
                ("mlflow.source.git.repoURL", git.remote_url),
            ):
                if value:
                    tags[tag] = value
            if git.dirty is not None:
                tags["mlhooks.context.git.dirty"] = str(git.dirty).lower()
        if git is not None and git.dirty and git.diff:
            diff = redact_text(git.diff)
    if "platform" in parts:
        facts = document["platform"] = platform_facts()
        tags["mlflow.user"] = facts["user"]
        tags["mlhooks.context.python"] = facts["python"]
        tags["mlhooks.context.platform"] = facts["platform"]
        tags["mlhooks.context.hostname"] = facts["hostname"]
    if "versions" in parts:
        found = document["versions"] = versions()
        tags.update({f"mlhooks.context.version.{k}": v for k, v in found.items()})
    if "seeds" in parts:
        found = document["seeds"] = seeds()
        tags.update({f"mlhooks.context.seed.{k}": v for k, v in found.items()})
    if "requirements" in parts:
        document["requirements"] = list(requirements())
    return tags, document, diff


_git_reads: dict[tuple[Path, bool, bool], tuple[float, gitinfo.GitInfo | None]] = {}


def _read_git(folder: Path, status: bool, diff: bool) -> gitinfo.GitInfo | None:
    """:func:`gitinfo.read`, reused for :data:`GIT_REUSE_SECONDS` (a loop of small
    autologged fits runs ``git status`` once, not once per fit)."""
    key = (folder, status, diff)
    now = time.monotonic()
    cached = _git_reads.get(key)
    if cached is not None and now - cached[0] < GIT_REUSE_SECONDS:
        return cached[1]
    info = gitinfo.read(folder, with_status=status, with_diff=diff)
    _git_reads[key] = (now, info)
    return info


class _Capture:
    """The capture of one top-level run, and the nested runs waiting for its tags."""

    def __init__(self, run: RunInfo, parts: frozenset[str]) -> None:
        self.run = run
        self.parts = parts
        self.source_tags: dict[str, str] | None = None
        self.waiting: list[RunInfo] = []
        self.lock = threading.Lock()
        self.hurry = threading.Event()
        """Set when the run ends: what is left is captured without waiting."""
        self.tags_shared = threading.Event()
        """Set once nested runs waiting for the source tags got them."""
        self.done = False
        self.held = False
        """Whether the run's end waits in the recorder for this capture."""
        self.thread = threading.Thread(target=self._capture, name="mlhooks-context", daemon=True)

    def _capture(self) -> None:
        try:
            self._collect_and_report()
        finally:
            with self.lock:
                self.done, held = True, self.held
            if held:
                recorder.release(self.run.run_id)  # the run's end is stored now

    def hold_end(self) -> None:
        """The run ended without waiting: its end is stored after what this capture
        still reports (nothing to hold once it is done)."""
        with self.lock:
            if self.done:
                return
            self.held = True
            recorder.hold(self.run.run_id)

    def _collect_and_report(self) -> None:
        try:
            tags, document, diff = collect(self.parts - {"requirements"})
            host.emit("on_tags", self.run, tags)
        except Exception as error:  # noqa: BLE001 - a background thread never raises
            report_background_error("run context capture", error)
            self._share_source_tags({})
            return
        self._share_source_tags(tags)
        try:
            if "requirements" in self.parts:
                if requirements.cache_info().currsize == 0 and activity.training():
                    # The one slow part (~0.1 s of Python, once per process), and one
                    # training does not change: it waits until no fit is running. What
                    # is known is stored now, so that a run killed meanwhile keeps it.
                    early = _stage_artifact(document, diff, holders=1)
                    if early is not None:
                        host.emit("on_artifact", self.run, early, ARTIFACT_DIR)
                    activity.wait_until_idle(self.hurry, recorder.hurry, most=REQUIREMENTS_DEFER)
                document["requirements"] = list(requirements())
            snapshot = _stage_artifact(document, diff)
            if snapshot is not None:
                host.emit("on_artifact", self.run, snapshot, ARTIFACT_DIR)
                _remember(self.parts, tags, snapshot)
        except Exception as error:  # noqa: BLE001
            report_background_error("run context capture", error)

    def _share_source_tags(self, tags: dict[str, str]) -> None:
        inherited = {k: v for k, v in tags.items() if k in SOURCE_TAGS}
        with self.lock:
            self.source_tags = inherited
            waiting, self.waiting = self.waiting, []
        for child in waiting:
            _tag_child(child, inherited)
        self.tags_shared.set()

    def share_with(self, child: RunInfo) -> bool:
        """Give ``child`` the source tags now, or once they are known (True)."""
        with self.lock:
            if self.source_tags is None:
                self.waiting.append(child)
                return True
            tags = self.source_tags
        _tag_child(child, tags)
        return False


def _tag_child(child: RunInfo, tags: dict[str, str]) -> None:
    if tags:  # a child that ended meanwhile still gets them (the recorder keeps its lanes)
        host.emit("on_tags", child, dict(tags))


def _stage_artifact(document: dict[str, Any], diff: str | None, holders: int = 2) -> str | None:
    """The artifact folder, staged with one holder for the run and (by default) one
    for reuse; None, with one warning, when the staging area cannot be written (a full
    or read-only disk): the run keeps its context tags, not its files."""
    files = {"context.json": json.dumps(document, indent=2, default=str)}
    if diff:
        files["git.diff"] = diff
    try:
        return staging.stage_files("context", files, holders=holders)
    except OSError as error:
        staging.warn_unwritable(error)
        return None


_recent: dict[tuple[frozenset[str], str], tuple[float, dict[str, str], str]] = {}
"""The last capture of each set of parts and working directory: (when, tags, staged
artifact)."""


def _reuse_key(parts: frozenset[str]) -> tuple[frozenset[str], str]:
    return parts, os.getcwd()


def forget() -> None:
    """Capture afresh at the next run start (for tests)."""
    with _lock:
        recent = list(_recent.values())
        _recent.clear()
        _git_reads.clear()
    for _, _, snapshot in recent:
        staging.release(snapshot)


def _remember(parts: frozenset[str], tags: dict[str, str], snapshot: str) -> None:
    with _lock:
        previous = _recent.get(_reuse_key(parts))
        _recent[_reuse_key(parts)] = (time.monotonic(), tags, snapshot)
    if previous is not None:
        staging.release(previous[2])


def _reuse_recent(run: RunInfo, parts: frozenset[str]) -> bool:
    """Report the capture of the last :data:`GIT_REUSE_SECONDS` for ``run``, if there is
    one: a loop of small fits then costs a dict and a reference per run, no thread."""
    with _lock:
        recent = _recent.get(_reuse_key(parts))
        if recent is None or time.monotonic() - recent[0] >= GIT_REUSE_SECONDS:
            return False
        _, tags, snapshot = recent
        staging.hold(snapshot, 1)
    host.emit("on_tags", run, tags)
    host.emit("on_artifact", run, snapshot, ARTIFACT_DIR)
    return True


_captures: dict[str, _Capture] = {}
_latest: _Capture | None = None
_lock = threading.Lock()


def begin(run: RunInfo, parts: frozenset[str]) -> None:
    """Start capturing the context of ``run`` (called right after ``on_run_start``)."""
    global _latest
    if not parts:
        return
    if run.parent_id is not None:
        with _lock:
            source = _captures.get(run.parent_id) or _latest
        if source is not None:
            if source.share_with(run):
                with _lock:
                    _captures[run.run_id] = source  # its end waits for the tags
            return
    if _reuse_recent(run, parts):
        return
    capture = _Capture(run, parts)
    with _lock:
        _captures[run.run_id] = capture
        _latest = capture
    capture.thread.start()


def finish(run: RunInfo, timeout: float = CAPTURE_TIMEOUT, *, wait: bool = True) -> None:
    """Wait until the capture of ``run`` was reported (called before ``on_run_end``).
    Without ``wait`` (a run mlhooks manages, ended at the end of a fit), the run's end
    is stored once the capture reported, without holding up the caller."""
    with _lock:
        capture = _captures.pop(run.run_id, None)
    if capture is None or capture.thread is threading.current_thread():
        return
    if not wait and capture.run.run_id == run.run_id:
        # No waiting for the fit that ends, but no deferring either: the next runs
        # reuse this capture once it is done (else each would start its own).
        capture.hurry.set()
        capture.hold_end()
        return
    if capture.run.run_id != run.run_id:  # a nested run: it only waits for the tags
        capture.tags_shared.wait(timeout)
        return
    capture.hurry.set()
    capture.thread.join(timeout)


def _forget_in_child() -> None:
    """A forked child captures afresh: the parent's captures are the parent's (their
    threads do not exist here, and their snapshots go once the parent stored them)."""
    global _latest, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _recent.clear()
    _captures.clear()
    _latest = None


at_exit(forget, Stage.RECORDER)  # after the runs ended: no run reuses a capture any more
in_forked_child(_forget_in_child, Stage.RECORDER)
