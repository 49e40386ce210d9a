"""Searching runs, in MLflow's conventions, on any backend that can.

``search_runs`` returns a pandas DataFrame whose columns are named as MLflow names them
(``run_id``, ``status``, ``params.<key>``, ``metrics.<key>``, ``tags.<key>``, ...), from
the default backend or the one named. A backend offers search by implementing
``search_runs`` and ``get_metric_history`` (the local store and MLflow do); for stores
without a query language of their own, :mod:`mlhooks.backends.query` applies MLflow's filter syntax
(``metrics.loss < 0.5 and params.lr = '0.1'``) to those rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlhooks.backends.base import Backend
from mlhooks.core.types import Metric
from mlhooks.delivery import selection


def search_runs(
    experiment: str | None = None,
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    backend: str | Backend | None = None,
) -> Any:
    """Runs as a pandas DataFrame, one row each, MLflow's column names.

    Args:
        experiment: only runs of this experiment (by name); all when None.
        filter_string: MLflow's filter syntax, e.g. ``"metrics.loss < 0.5"``.
        order_by: e.g. ``["metrics.loss ASC", "start_time DESC"]``.
        backend: a backend name or object; the default backend when None.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("mlhooks.search_runs returns a DataFrame: pip install pandas") from None
    target = searchable(backend, "search_runs")
    rows = target.search_runs(  # type: ignore[attr-defined]
        experiment=experiment, filter_string=filter_string or "", order_by=list(order_by or [])
    )
    return pd.DataFrame(rows)


def get_metric_history(run_id: str, key: str, backend: str | Backend | None = None) -> list[Metric]:
    """Every point of metric ``key`` of ``run_id``, in step order."""
    target = searchable(backend, "get_metric_history")
    points: list[Metric] = target.get_metric_history(run_id, key)  # type: ignore[attr-defined]
    return sorted(points, key=lambda m: (m.step, m.timestamp))


def searchable(backend: str | Backend | None, method: str) -> Backend:
    """The backend named (the default one when None), once what was logged before is
    stored; ValueError when it has no ``method``."""
    target = selection.resolve(backend)[0]
    if not callable(getattr(target, method, None)):
        raise ValueError(f"backend {target.name!r} cannot {method.replace('_', ' ')}")
    from mlhooks.delivery.recorder import recorder

    recorder.flush(30)  # what was logged before the search is part of it
    return target
