"""Read back what W&B stored for a run, from its local run folder (``<dir>/wandb/
offline-run-<time>-<id>`` offline, ``run-<time>-<id>`` online), without the network.

For tests and scripts::

    from mlhooks_wandb import reading

    stored = reading.load_run("runs-dir", run.run_id)   # the run's only folder
    stored.config            # {"lr": 0.1, "mlhooks.tags": {...}}
    stored.history           # [{"mlhooks/step": 0, "loss": 0.9, "_step": 0, ...}, ...]
    stored.points("loss")    # [(step, value), ...] in the order stored
    stored.summary, stored.tags, stored.notes, stored.group, stored.exit_code
    stored.artifacts         # [StoredArtifact(type="model", name=..., files={...}), ...]
    stored.files             # files saved with the run, relative to its files/ folder
"""

from __future__ import annotations

import gzip
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .mapping import STEP_METRIC, wandb_run_id
from .records import read_records


@dataclass
class StoredArtifact:
    type: str
    name: str
    metadata: dict[str, Any]
    aliases: list[str]
    files: dict[str, str]
    """Path in the artifact -> where its bytes wait locally (W&B's staging copy)."""
    digests: dict[str, str] = field(default_factory=dict)


@dataclass
class StoredRun:
    """One W&B run folder, as its run file records it."""

    folder: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    notes: str = ""
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metric_definitions: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[StoredArtifact] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    """None while the run was not finished (a process killed, or not ended yet)."""
    resumed: bool = False

    def points(self, key: str) -> list[tuple[int, float]]:
        """``(mlhooks step, value)`` of every history row that has ``key``, in order."""
        return [(int(row[STEP_METRIC]), row[key]) for row in self.history if key in row]

    def metric_keys(self) -> set[str]:
        """The keys of logged metrics (W&B's own ``_*`` keys and the step left out)."""
        keys = {key for row in self.history for key in row}
        return {key for key in keys if not key.startswith("_") and key != STEP_METRIC}

    def artifact(self, type_: str, name: str | None = None) -> StoredArtifact:
        """The one artifact of ``type_`` (and ``name``); AssertionError otherwise."""
        found = [a for a in self.artifacts if a.type == type_ and (name is None or a.name == name)]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} artifacts of type {type_!r} named {name!r}")
        return found[0]


def run_dirs(root: str | Path, run_id: str) -> list[Path]:
    """The W&B folders of mlhooks run ``run_id`` under ``root`` (W&B's ``dir``), oldest
    first: one, or more when the run was resumed (offline W&B starts a new folder,
    ``<time>-<id>-1`` when the time is the same)."""
    pattern = re.compile(
        rf"(?:offline-)?run-(\d{{8}}_\d{{6}})-{re.escape(wandb_run_id(run_id))}(?:-(\d+))?"
    )
    found = []
    for path in (Path(root) / "wandb").glob("*run-*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir():
            found.append((match[1], int(match[2] or 0), path))
    return [path for _, _, path in sorted(found)]


def load_run(root: str | Path, run_id: str, wait: float = 0.0) -> StoredRun:
    """The only W&B folder of ``run_id``; AssertionError when there are none or several.
    With ``wait``, first wait up to that many seconds for the run to be finished."""
    folders = run_dirs(root, run_id)
    if len(folders) != 1:
        raise AssertionError(f"{len(folders)} W&B run folders for {run_id} under {root}")
    if wait:
        wait_until_finished(folders[0], wait)
    return load(folders[0])


def wait_until_finished(folder: str | Path, timeout: float) -> bool:
    """Wait until the run file in ``folder`` records the run's end: ``run.finish()``
    returns before W&B's service has written the last records. True when it did."""
    deadline = time.monotonic() + timeout
    while True:
        if any(_has_exit(path) for path in Path(folder).glob("run-*.wandb")):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _has_exit(path: Path) -> bool:
    try:
        return any(record.WhichOneof("record_type") == "exit" for record in read_records(path))
    except (OSError, ValueError):
        return False


def load(folder: str | Path) -> StoredRun:
    """Everything the run file in ``folder`` records."""
    folder = Path(folder)
    (path,) = folder.glob("run-*.wandb")
    stored = StoredRun(folder)
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _read_run(stored, record.run)
        elif kind == "config":
            _apply_config(stored.config, record.config)
        elif kind == "history":
            stored.history.append(
                {_key(item): _history_value(item) for item in record.history.item}
            )
        elif kind == "summary":
            _apply_summary(stored.summary, record.summary)
        elif kind == "metric":
            metric = record.metric
            stored.metric_definitions.append(
                {
                    "name": metric.name,
                    "glob_name": metric.glob_name,
                    "step_metric": metric.step_metric,
                    "hidden": metric.options.hidden,
                }
            )
        elif kind == "artifact":
            stored.artifacts.append(_artifact(record.artifact))
        elif kind == "files":
            stored.files += [item.path for item in record.files.files if item.type == 0]
        elif kind == "exit":
            stored.exit_code = record.exit.exit_code
    return stored


def first_run_record(folder: str | Path) -> StoredRun | None:
    """The run's name, project, group, notes and tags as its run file first recorded
    them (read no further), or None when there is no readable run file."""
    stored = StoredRun(Path(folder))
    for path in Path(folder).glob("run-*.wandb"):
        try:
            for record in read_records(path):
                if record.WhichOneof("record_type") == "run":
                    _read_run(stored, record.run)
                    return stored
        except (OSError, ValueError):
            return None
    return None


def _read_run(stored: StoredRun, run: Any) -> None:
    """A run record: the first, and again whenever tags, name or notes change."""
    stored.run_id, stored.project, stored.entity = run.run_id, run.project, run.entity
    stored.name, stored.group, stored.notes = run.display_name, run.run_group, run.notes
    stored.tags = tuple(run.tags)
    stored.resumed = stored.resumed or run.resumed
    _apply_config(stored.config, run.config)


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else str(item.key)


def _apply_config(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        key = _key(item)
        if key != "_wandb":
            config[key] = json.loads(item.value_json)
    for item in record.remove:
        config.pop(_key(item), None)


def _apply_summary(summary: dict[str, Any], record: Any) -> None:
    for item in record.update:
        key = _key(item)
        if not key.startswith("_wandb"):
            summary[key] = json.loads(item.value_json)
    for item in record.remove:
        summary.pop(_key(item), None)


def _history_value(item: Any) -> Any:
    """A history value, in either of the forms W&B writes."""
    if item.value_json:
        return json.loads(item.value_json)
    form = item.WhichOneof("value")
    if form is None or form == "none":
        return None
    if form == "json":
        return json.loads(item.json)
    return getattr(item, form)


def _artifact(record: Any) -> StoredArtifact:
    files: dict[str, str] = {}
    digests: dict[str, str] = {}
    manifest = record.manifest
    if manifest.manifest_file_path:  # a large manifest, written to a file of its own
        with gzip.open(manifest.manifest_file_path, "rt") as lines:
            for line in lines:
                entry = json.loads(line)
                files[entry["path"]] = entry.get("local_path", "")
                digests[entry["path"]] = entry.get("digest", "")
    for entry in manifest.contents:
        files[entry.path] = entry.local_path
        digests[entry.path] = entry.digest
    return StoredArtifact(
        type=record.type,
        name=record.name,
        metadata=json.loads(record.metadata) if record.metadata else {},
        aliases=list(record.aliases),
        files=files,
        digests=digests,
    )
