"""How mlhooks' data becomes W&B's: history rows, summary values, config values, tag
labels and names W&B accepts. Plain functions, no W&B import: the backend applies them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STEP_METRIC = "mlhooks/step"
"""The history key that holds each row's mlhooks step: every other metric is plotted
against it (``define_metric("*", step_metric=STEP_METRIC)``), so W&B's own ``_step``
stays a row counter and points may come in any step order."""

TAGS_KEY = "mlhooks.tags"
"""The config key under which a run's tags are kept whole (W&B tags are labels)."""

TAG_LIMIT = 64
"""W&B refuses tags longer than this."""

CONTEXT_TAG_PREFIXES = ("mlflow.", "mlhooks.context.")
"""Tags that describe where a run came from: kept in the config, not as labels."""

EXIT_CODES = {"FINISHED": 0, "FAILED": 1, "KILLED": 255}
"""mlhooks' end status -> ``run.finish(exit_code=...)`` (255: W&B's code for Ctrl-C)."""

_RUN_ID_UNSAFE = re.compile(r"[\s:;,#?/'\\]")
_ARTIFACT_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT_LIKE = re.compile(r"-?[0-9.]+(e[-+]?[0-9]+)?", re.IGNORECASE)


@dataclass
class Row:
    """One W&B history row: points of one step, each key at most once."""

    step: int
    timestamp: int
    """Of the row's first point, in ms."""
    values: dict[str, float] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """What ``run.log`` takes: the values, the step metric and the timestamp."""
        return {**self.values, STEP_METRIC: self.step, "_timestamp": self.timestamp / 1000}


def history_rows(points: Iterable[tuple[str, float, int, int]]) -> list[Row]:
    """Points of one run grouped into rows, one per step where possible, in the order
    of each row's first point. A key logged twice at one step gets a second row, so
    no point is lost."""
    rows: list[Row] = []
    latest: dict[int, Row] = {}
    for key, value, step, timestamp in points:
        row = latest.get(step)
        if row is None or key in row.values:
            row = latest[step] = Row(step, timestamp)
            rows.append(row)
        row.values[key] = value
    return rows


class FinalValues:
    """Each key's value at its highest step (the last logged among equals): the run's
    summary, whatever order the points came in."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, float]] = {}

    def update(self, points: Iterable[tuple[str, float, int, int]]) -> dict[str, float]:
        """Take ``points``; return the final value of each of their keys (W&B sets a
        key's summary to the last value logged: these put the final one back)."""
        latest = self._latest
        keys: dict[str, None] = {}
        for key, value, step, _ in points:
            known = latest.get(key)
            if known is None or step >= known[0]:
                latest[key] = (step, value)
            keys[key] = None
        return {key: latest[key][1] for key in keys}

    def values(self) -> dict[str, float]:
        return {key: value for key, (_, value) in self._latest.items()}


def config_value(text: str) -> Any:
    """A param as W&B's config keeps it best: a number or boolean where the text is
    exactly how Python writes that value (``str(value) == text``), else the text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if _INT.fullmatch(text):
        whole = int(text)
        if str(whole) == text and abs(whole) < 2**53:  # larger ones lose precision in JSON
            return whole
        return text
    if _FLOAT_LIKE.fullmatch(text):
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number) and str(number) == text:
            return number
    return text


def config_values(params: Mapping[str, str]) -> dict[str, Any]:
    return {key: config_value(value) for key, value in params.items()}


def tag_labels(tags: Mapping[str, str]) -> list[str]:
    """W&B tags for mlhooks' tags: ``key=value``, shortened to W&B's 64 characters;
    context tags (``mlflow.*``, ``mlhooks.context.*``) are not labels."""
    labels = []
    for key, value in tags.items():
        if key.startswith(CONTEXT_TAG_PREFIXES):
            continue
        label = f"{key}={value}".strip()
        if len(label) > TAG_LIMIT:
            label = label[: TAG_LIMIT - 1] + "…"
        if label:
            labels.append(label)
    return labels


def wandb_run_id(run_id: str) -> str:
    """The W&B run id of mlhooks run ``run_id``: the same id, characters W&B refuses
    replaced (mlhooks' and MLflow's ids need none)."""
    return _RUN_ID_UNSAFE.sub("-", run_id) or "-"


def artifact_name(*parts: str) -> str:
    """A W&B artifact name from ``parts`` (joined by ``-``): letters, digits, ``_``,
    ``-`` and ``.`` only, at most 128 characters."""
    name = _ARTIFACT_UNSAFE.sub("_", "-".join(part for part in parts if part))
    return name[:128] or "artifact"


def group_of(parent_name: str, parent_id: str) -> str:
    """The W&B group of a parent's children: its name and the start of its id."""
    return f"{parent_name}-{parent_id[:8]}"
