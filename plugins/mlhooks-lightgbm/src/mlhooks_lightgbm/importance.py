"""Feature importance as JSON and a chart. The scores are read from the booster when
training ended (two quick calls into LightGBM, a snapshot of the model as it is);
the files are written on mlhooks' background worker, never on the training thread."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession

from .options import options_of

MAX_BARS = 30
"""Most features drawn in a chart (the JSON has them all)."""
ARTIFACT_PATH = "feature_importance"


def log_importance(session: FitSession, booster: Any) -> None:
    """Each of the fit's ``importance_types`` as ``feature_importance/<type>.json``
    and ``.png``, written in the background."""
    types = options_of(session).importance_types
    if not types or booster.current_iteration() == 0:
        return
    names = [str(name) for name in booster.feature_name()]
    scores = {
        kind: [float(value) for value in booster.feature_importance(importance_type=kind)]
        for kind in types
    }
    session.in_background(functools.partial(write_importance, names, scores), ARTIFACT_PATH)


def write_importance(
    names: Sequence[str], scores: Mapping[str, Sequence[float]], directory: Path
) -> None:
    """``<type>.json`` (feature -> score, highest first) and ``<type>.png`` per type."""
    for kind, values in scores.items():
        ranked = dict(sorted(zip(names, values, strict=True), key=lambda i: i[1], reverse=True))
        (directory / f"{kind}.json").write_text(json.dumps(ranked, indent=1))
        _chart(ranked, kind, directory / f"{kind}.png")


def _chart(scores: Mapping[str, float], kind: str, path: Path) -> None:
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
    axes.set_title(f"LightGBM feature importance: {kind}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
