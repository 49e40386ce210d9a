"""Feature importance as JSON and a chart. The scores are read from the booster when
training ended (two quick calls into LightGBM, a snapshot of the model as it is);
the files are written on mlhooks' background worker, never on the training thread."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession, bar_chart_svg

from .options import options_of

MAX_BARS = 30
"""Most features drawn in a chart (the JSON has them all)."""
ARTIFACT_PATH = "feature_importance"


def log_importance(session: FitSession, booster: Any) -> None:
    """Each of the fit's ``importance_types`` as ``feature_importance/<type>.json``
    and ``.svg``, written in the background."""
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
    """``<type>.json`` (feature -> score, highest first) and ``<type>.svg`` per type."""
    for kind, values in scores.items():
        ranked = dict(sorted(zip(names, values, strict=True), key=lambda i: i[1], reverse=True))
        (directory / f"{kind}.json").write_text(json.dumps(ranked, indent=1))
        _chart(ranked, kind, directory / f"{kind}.svg")


def _chart(scores: Mapping[str, float], kind: str, path: Path) -> None:
    """A horizontal bar chart of the top ``MAX_BARS`` features, as SVG (no plotting
    library: drawing stays off the training thread's interpreter lock)."""
    top = dict(list(scores.items())[:MAX_BARS])
    path.write_text(bar_chart_svg(top, f"LightGBM feature importance: {kind}", kind))
