"""MLflow's filter syntax and row shape, for stores without a query language.

A backend that holds :class:`~mlhooks.core.types.RunData` (the local and in-memory
stores) answers ``search_runs`` with :func:`search_rows`: one row per run in MLflow's
column conventions (``run_id``, ``metrics.<key>``, ``params.<key>``, ...), filtered by
:func:`matches` (``metrics.loss < 0.5 and params.lr = '0.1'``) and :func:`ordered`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from mlhooks.core.types import RunData

Row = dict[str, Any]

_CLAUSE = re.compile(
    r"^\s*(?P<key>[`\"']?[\w.\-/: ]+?[`\"']?)\s*"
    r"(?P<op>!=|<=|>=|=|<|>|\bNOT\s+LIKE\b|\bI?LIKE\b)\s*(?P<value>.+?)\s*$",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
RUN_ATTRIBUTES = frozenset(
    {"status", "run_id", "run_name", "experiment_id", "start_time", "end_time"}
)
_ALIASES = {"source_run_id": "run_id"}
"""Attribute names MLflow's logged model search uses for a column of ours."""


def search_rows(
    runs: Iterable[RunData], experiment: str | None, filter_string: str, order_by: Sequence[str]
) -> list[Row]:
    """What ``search_runs`` asks of a backend, for stores that hold :class:`RunData`:
    rows of the experiment's runs that pass the filter, ordered (newest first by default)."""
    rows = [run_row(run) for run in runs if experiment is None or run.info.experiment == experiment]
    return ordered([r for r in rows if matches(r, filter_string)], order_by or ["start_time DESC"])


def run_row(data: RunData) -> Row:
    """A run as one row in MLflow's column conventions."""
    info = data.info
    row: Row = {
        "run_id": info.run_id,
        "run_name": info.name,
        "experiment_id": info.experiment,
        "status": info.status.value,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "parent_run_id": info.parent_id,
    }
    row.update({f"metrics.{k}": v for k, v in data.latest().items()})
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items()})
    return row


def matches(row: Row, filter_string: str, attributes: frozenset[str] = RUN_ATTRIBUTES) -> bool:
    """Whether ``row`` passes an MLflow filter string (clauses joined by ``and``);
    ``attributes``: the columns it may name without a prefix."""
    if not filter_string.strip():
        return True
    clauses = _AND.split(filter_string.strip())
    return all(_clause_holds(row, clause, attributes) for clause in clauses)


def _clause_holds(row: Row, clause: str, attributes: frozenset[str]) -> bool:
    match = _CLAUSE.match(clause)
    if match is None:
        raise ValueError(f"cannot parse the filter clause {clause!r}")
    column = _column(match["key"], attributes)
    op = " ".join(match["op"].upper().split())
    raw = match["value"]
    quoted = raw[:1] in "'\"" and raw[-1:] == raw[:1]
    wanted: Any = raw[1:-1] if quoted else float(raw)
    actual = row.get(column)
    if actual is None:
        return False
    if "LIKE" in op:
        pattern = "^" + re.escape(str(wanted)).replace("%", ".*").replace("_", ".") + "$"
        found = re.match(pattern, str(actual), re.IGNORECASE if op.endswith("ILIKE") else 0)
        return (found is not None) != op.startswith("NOT")
    if isinstance(wanted, float):
        try:
            actual = float(actual)
        except (TypeError, ValueError):
            return False
    else:
        actual = str(actual)
    return bool(
        {
            "=": actual == wanted,
            "!=": actual != wanted,
            "<": actual < wanted,
            "<=": actual <= wanted,
            ">": actual > wanted,
            ">=": actual >= wanted,
        }[op]
    )


def _column(key: str, attributes: frozenset[str] = RUN_ATTRIBUTES) -> str:
    key = key.strip("`\"'")
    entity, _, name = key.partition(".")
    entity = entity.lower()
    if entity in ("metric", "metrics"):
        return f"metrics.{name.strip('`')}"
    if entity in ("param", "params", "parameter", "parameters"):
        return f"params.{name.strip('`')}"
    if entity in ("tag", "tags"):
        return f"tags.{name.strip('`')}"
    if entity in ("attribute", "attributes", "attr", "run"):
        key = name
    key = _ALIASES.get(key, key)
    if key in attributes:
        return key
    raise ValueError(f"unknown filter key {key!r}: use metrics.*, params.*, tags.* or attributes")


def ordered(
    rows: Iterable[Row], order_by: Sequence[str], attributes: frozenset[str] = RUN_ATTRIBUTES
) -> list[Row]:
    """``rows`` sorted by MLflow-style ``order_by`` terms; missing values last."""
    result = list(rows)
    for term in reversed(order_by):
        parts = term.split()
        column = _column(parts[0], attributes)
        descending = len(parts) > 1 and parts[1].upper() == "DESC"
        present = [r for r in result if r.get(column) is not None]
        missing = [r for r in result if r.get(column) is None]
        present.sort(key=lambda r: r[column], reverse=descending)
        result = present + missing
    return result
