"""Comparing runs: a table of what differs and how each metric went, and curves.

Both functions take runs as a list of run ids (MLflow's or mlhooks' ids, or run
names), a DataFrame from :func:`mlhooks.search_runs`, or a filter string in MLflow's
syntax (``"params.model = 'ridge'"``), and read them from the default backend or the
one named, MLflow or the local store alike. They need ``mlhooks[compare]`` (pandas
and matplotlib).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlhooks.backends.base import Backend
from mlhooks.core.types import Metric
from mlhooks.reports.search import get_metric_history, search_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Runs = Any
"""Run ids or names, a search result DataFrame, or a filter string."""

_LOWER_IS_BETTER = re.compile(
    r"(loss|error|err|mse|mae|rmse|mape|deviance|perplexity|time|duration|latency)",
    re.IGNORECASE,
)
_FILTER = re.compile(
    r"^\s*[`\"']?((metrics?|params?|parameters?|tags?|attributes?|attr|run)\.|"
    r"(status|run_id|run_name|experiment_id|start_time|end_time)\b)",
    re.IGNORECASE,
)
"""A filter string starts with an entity (``metrics.``, ``params.``, ...) or an attribute;
any other string is a run id or name (``"lr=0.1"`` is a name)."""
_MLHOOKS_ID = "tags.mlhooks.run_id"


def require(module: str) -> Any:
    """Import ``module`` (pandas, matplotlib) or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"comparing runs needs {module.split('.')[0]}: pip install 'mlhooks[compare]'"
        ) from None


def select_runs(
    runs: Runs, *, backend: str | Backend | None = None, experiment: str | None = None
) -> Any:
    """The search rows (a DataFrame) of ``runs``, in the order given."""
    pd = require("pandas")
    if isinstance(runs, pd.DataFrame):
        return runs.reset_index(drop=True)
    if isinstance(runs, str) and _FILTER.match(runs):
        return search_runs(experiment, filter_string=runs, backend=backend)
    wanted = [runs] if isinstance(runs, str) else list(runs)
    if not wanted:
        raise ValueError("no runs to compare")
    every = search_runs(experiment, backend=backend)
    rows = []
    missing = []
    for ref in wanted:
        match = _find(every, str(ref))
        if match is None:
            missing.append(str(ref))
        else:
            rows.append(match)
    if missing:
        raise ValueError(f"no run with id or name {', '.join(map(repr, missing))}")
    return pd.DataFrame(rows).reset_index(drop=True)


def _find(frame: Any, ref: str) -> Any:
    """The row of run ``ref``: its id (MLflow's or mlhooks'), else its unique name."""
    if frame.empty:
        return None
    for column in ("run_id", _MLHOOKS_ID):
        if column in frame.columns:
            hits = frame[frame[column] == ref]
            if len(hits):
                return hits.iloc[0]
    hits = frame[frame["run_name"] == ref]
    if len(hits) > 1:
        raise ValueError(f"{len(hits)} runs are named {ref!r}; give a run id instead")
    return hits.iloc[0] if len(hits) else None


def metric_keys(frame: Any, *, include_system: bool = False) -> list[str]:
    """The metric keys of the runs in ``frame`` (``system/*`` only when asked)."""
    keys = [c[len("metrics.") :] for c in frame.columns if c.startswith("metrics.")]
    return sorted(k for k in keys if include_system or not k.startswith("system/"))


def lower_is_better(key: str, goals: Mapping[str, str] | None = None) -> bool:
    """Whether the best value of ``key`` is its minimum: ``goals[key]`` (``"min"`` or
    ``"max"``), else by name (loss, error, mse, rmse, mae, time, ... are minimised)."""
    if goals and key in goals:
        goal = goals[key].lower()
        if goal not in ("min", "max"):
            raise ValueError(f"the goal of {key!r} must be 'min' or 'max', not {goals[key]!r}")
        return goal == "min"
    return bool(_LOWER_IS_BETTER.search(key))


def histories(
    frame: Any, key: str, backend: str | Backend | None = None
) -> list[tuple[Any, list[Metric]]]:
    """(row, every point of ``key``) for each run in ``frame`` that has it."""
    column = f"metrics.{key}"
    found = []
    for _, row in frame.iterrows():
        if column in row and _present(row[column]):
            found.append((row, get_metric_history(row["run_id"], key, backend=backend)))
    return found


def _present(value: Any) -> bool:
    return value is not None and value == value  # NaN is missing


def compare_runs(
    runs: Runs,
    *,
    metrics: Sequence[str] | None = None,
    backend: str | Backend | None = None,
    experiment: str | None = None,
    goals: Mapping[str, str] | None = None,
    include_system: bool = False,
) -> Any:
    """A DataFrame, one row per run: ``run_id``, ``run_name``, ``status``,
    ``duration_s``, the ``params.*`` that differ between the runs (all of them for one
    run), then ``<metric> (final)`` and ``<metric> (best)`` for each metric.

    Args:
        runs: run ids or names, a search result, or a filter string.
        metrics: only these metric keys (default: every one, ``system/*`` excluded
            unless ``include_system``).
        goals: ``{"accuracy": "max"}`` where the name does not tell whether lower is
            better (see :func:`lower_is_better`).
    """
    pd = require("pandas")
    frame = select_runs(runs, backend=backend, experiment=experiment)
    table = pd.DataFrame(
        {
            "run_id": frame.get("run_id"),
            "run_name": frame.get("run_name"),
            "status": frame.get("status"),
            "duration_s": [_duration(row) for _, row in frame.iterrows()],
        }
    )
    params = sorted(c for c in frame.columns if c.startswith("params."))
    for column in params:
        values = frame[column].astype(object).where(frame[column].notna(), None)
        if len(frame) == 1 or len(set(values)) > 1:
            table[column] = values
    keys = list(metrics) if metrics else metric_keys(frame, include_system=include_system)
    for key in keys:
        final: dict[int, float] = {}
        best: dict[int, float] = {}
        points = dict(_by_position(frame, histories(frame, key, backend)))
        choose = min if lower_is_better(key, goals) else max
        for position, history in points.items():
            if history:
                final[position] = max(history, key=lambda m: (m.step, m.timestamp)).value
                best[position] = choose(m.value for m in history)
        table[f"{key} (final)"] = [final.get(i) for i in range(len(frame))]
        table[f"{key} (best)"] = [best.get(i) for i in range(len(frame))]
    return table


def _by_position(frame: Any, found: list[tuple[Any, list[Metric]]]) -> list[tuple[int, Any]]:
    return [(int(row.name), history) for row, history in found]


def _duration(row: Any) -> float | None:
    start, end = row.get("start_time"), row.get("end_time")
    if not _present(start) or not _present(end):
        return None
    difference = end - start
    seconds = getattr(difference, "total_seconds", None)  # datetimes from mlflow.search_runs
    return float(seconds()) if callable(seconds) else float(difference) / 1000.0


def run_label(row: Any) -> str:
    """How a run is named in legends: its name and the start of its id."""
    name = row.get("run_name")
    run_id = str(row.get("run_id"))
    return f"{name} ({run_id[:8]})" if _present(name) and name else run_id


def plot_metric(
    runs: Runs,
    key: str,
    *,
    backend: str | Backend | None = None,
    experiment: str | None = None,
) -> Figure:
    """A matplotlib Figure of metric ``key`` against step, one line per run (the
    legend names the runs). ValueError when no run has ``key``."""
    require("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    frame = select_runs(runs, backend=backend, experiment=experiment)
    found = [(row, points) for row, points in histories(frame, key, backend) if points]
    if not found:
        raise ValueError(f"none of the runs has a metric {key!r}")
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for row, points in found:
        marker = "o" if len(points) <= 30 else None
        axes.plot(
            [p.step for p in points],
            [p.value for p in points],
            marker=marker,
            markersize=3,
            label=_literal(run_label(row)),
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel(_literal(key))
    axes.set_title(_literal(key))
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def _literal(text: str) -> str:
    """``text`` shown as is by matplotlib: no math mode, no hidden ``_`` labels."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text
