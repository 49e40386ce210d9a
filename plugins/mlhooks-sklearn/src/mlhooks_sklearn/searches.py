"""Hyper-parameter searches: the search's run, and a child run per candidate.

Children are built after the search's ``fit`` returned, from ``cv_results_``: the
candidates' fits may have run in worker processes (``n_jobs=2``), where nothing is
tracked; ``cv_results_`` holds every candidate's params and scores all the same.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlhooks.plugin import FitSession

from . import data
from .options import options_of
from .training import log_training_metrics

CV_RESULTS_FILE = "cv_results.csv"


def is_search(model: Any) -> bool:
    module = sys.modules.get("sklearn.model_selection._search")
    return module is not None and isinstance(model, module.BaseSearchCV)


def report(session: FitSession, search: Any, X: Any, y: Any) -> None:
    """Best params and score, cv_results_, the best model, then the children."""
    best_params = getattr(search, "best_params_", None)
    if isinstance(best_params, Mapping):
        session.log_params({f"best_{key}": value for key, value in best_params.items()})
    best_score = getattr(search, "best_score_", None)
    if best_score is not None:
        session.log_metrics({"best_cv_score": best_score})
    best = getattr(search, "best_estimator_", None)
    if best is not None:
        log_training_metrics(session, best, X, y)
        session.log_model(best, flavor="sklearn", sample_input=data.sample_rows(X))
    results = getattr(search, "cv_results_", None)
    if isinstance(results, Mapping) and "params" in results:
        log_cv_results(session, results)
        log_candidates(session, results, options_of(session).max_tuning_runs)


def log_cv_results(session: FitSession, results: Mapping[str, Any]) -> None:
    folder = tempfile.mkdtemp(prefix="mlhooks-sklearn-")
    try:
        path = Path(folder) / CV_RESULTS_FILE
        columns = list(results)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in zip(*(results[c] for c in columns), strict=True):
                writer.writerow([_cell(value) for value in row])
        session.log_artifact(str(path))  # a snapshot is taken: the folder can go
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return repr(dict(value))
    return str(value)


def log_candidates(
    session: FitSession, results: Mapping[str, Any], limit: int | None = None
) -> None:
    """One child run per candidate, best first; at most ``limit`` (all when None).

    Successive-halving searches evaluate a candidate once per iteration it survives:
    its child holds one point per iteration (step = ``iter``)."""
    params = list(results["params"])
    columns = _numeric_columns(results)
    rank = _rank(results, len(params))
    iterations = results.get("iter")
    rows_of: dict[str, list[int]] = {}
    for row, candidate in enumerate(params):
        key = repr(sorted(candidate.items())) if iterations is not None else str(row)
        rows_of.setdefault(key, []).append(row)
    groups = sorted(rows_of.values(), key=lambda rows: (min(rank[r] for r in rows), rows[0]))
    if limit is not None:
        groups = groups[: max(int(limit), 0)]
    for rows in groups:
        first = rows[0]
        child = session.child(f"candidate-{first}", params=params[first])
        try:
            for row in rows:
                step = int(iterations[row]) if iterations is not None else 0
                child.log_metrics({name: values[row] for name, values in columns.items()}, step)
        finally:
            child.end()


def _numeric_columns(results: Mapping[str, Any]) -> dict[str, Any]:
    columns = {}
    for name, values in results.items():
        if name == "params" or name.startswith("param_"):
            continue
        array = np.asarray(values)
        if array.ndim == 1 and array.dtype.kind in "biuf":
            columns[name] = array.astype(float)
    return columns


def _rank(results: Mapping[str, Any], count: int) -> list[float]:
    """Each row's rank (the refit metric's, else the first one), for ordering."""
    keys = sorted(k for k in results if k.startswith("rank_test_"))
    if not keys:
        return [0.0] * count
    key = "rank_test_score" if "rank_test_score" in keys else keys[0]
    return [float(v) for v in np.asarray(results[key], dtype=float)]
