"""Feature importance as JSON and a chart, built on mlhooks' background worker from
the model's bytes (captured when training ended), never on the training thread."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

DEFAULT_TYPES = ("gain", "weight", "cover")
MAX_BARS = 30
"""Most features drawn in a chart (the JSON has them all)."""


def write_importance(raw_model: bytes, types: Sequence[str], directory: Path) -> None:
    """``<type>.json`` (feature -> score, highest first) and ``<type>.png`` per type
    the booster defines (a linear booster has no gain or cover)."""
    import xgboost

    booster = xgboost.Booster(model_file=bytearray(raw_model))
    for kind in types:
        try:
            scores = booster.get_score(importance_type=kind)
        except xgboost.core.XGBoostError:  # not defined for this booster (gblinear: gain)
            continue
        totals = {name: _total(score) for name, score in scores.items()}
        ranked = dict(sorted(scores.items(), key=lambda item: totals[item[0]], reverse=True))
        (directory / f"{kind}.json").write_text(json.dumps(ranked, indent=1))
        _chart({name: totals[name] for name in ranked}, kind, directory / f"{kind}.png")


def _total(score: float | list[float]) -> float:
    """A feature's score; summed over the targets of a multi-output model."""
    return float(sum(score)) if isinstance(score, list) else float(score)


def _chart(scores: dict[str, float], kind: str, path: Path) -> None:
    """A horizontal bar chart; skipped when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # the object API: safe off the main thread
    except ImportError:
        return
    top = list(scores.items())[:MAX_BARS][::-1]
    figure = Figure(figsize=(7, 1.2 + 0.28 * max(len(top), 1)))
    axes = figure.add_subplot()
    axes.barh([name for name, _ in top], [value for _, value in top], color="#4c72b0")
    axes.set_xlabel(f"importance ({kind})")
    axes.set_title(f"XGBoost feature importance: {kind}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
