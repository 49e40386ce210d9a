"""Feature importance as JSON and a chart, built on mlhooks' background worker from
the model's bytes (captured when training ended), never on the training thread."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mlhooks.plugin import bar_chart_svg

DEFAULT_TYPES = ("gain", "weight", "cover")
MAX_BARS = 30
"""Most features drawn in a chart (the JSON has them all)."""


class ModelBytes(NamedTuple):
    """A booster captured when training ended: the logged model's pickle (a Booster
    or a scikit-learn API estimator), or the booster's own ``save_raw`` bytes."""

    data: bytes
    pickled: bool

    def booster(self) -> Any:
        import xgboost

        if not self.pickled:
            return xgboost.Booster(model_file=bytearray(self.data))
        model = pickle.loads(self.data)  # bytes mlhooks pickled itself
        return model if isinstance(model, xgboost.Booster) else model.get_booster()


def write_importance(saved: ModelBytes, types: Sequence[str], directory: Path) -> None:
    """``<type>.json`` (feature -> score, highest first) and ``<type>.svg`` per type
    the booster defines (a linear booster has no gain or cover)."""
    import xgboost

    booster = saved.booster()
    for kind in types:
        try:
            scores = booster.get_score(importance_type=kind)
        except xgboost.core.XGBoostError:  # not defined for this booster (gblinear: gain)
            continue
        totals = {name: _total(score) for name, score in scores.items()}
        ranked = dict(sorted(scores.items(), key=lambda item: totals[item[0]], reverse=True))
        (directory / f"{kind}.json").write_text(json.dumps(ranked, indent=1))
        _chart({name: totals[name] for name in ranked}, kind, directory / f"{kind}.svg")


def _total(score: float | list[float]) -> float:
    """A feature's score; summed over the targets of a multi-output model."""
    return float(sum(score)) if isinstance(score, list) else float(score)


def _chart(scores: Mapping[str, float], kind: str, path: Path) -> None:
    """A horizontal bar chart of the top ``MAX_BARS`` features, as SVG (no plotting
    library: drawing stays off the training thread's interpreter lock)."""
    top = dict(list(scores.items())[:MAX_BARS])
    path.write_text(bar_chart_svg(top, f"XGBoost feature importance: {kind}", kind))
