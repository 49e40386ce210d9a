"""What ``autolog(xgboost={...})`` takes besides the common options."""

from __future__ import annotations

from dataclasses import dataclass

from mlhooks.plugin import FitSession, FrameworkOptions

from .importance import DEFAULT_TYPES

IMPORTANCE_TYPES = ("weight", "gain", "cover", "total_gain", "total_cover")
"""What ``Booster.get_score(importance_type=...)`` knows."""


@dataclass(frozen=True)
class XGBoostOptions(FrameworkOptions):
    """The XGBoost integration's options (see the plugin's README)."""

    importance_types: tuple[str, ...] = DEFAULT_TYPES
    """Feature importance types logged as JSON and charts (empty: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [kind for kind in self.importance_types if kind not in IMPORTANCE_TYPES]
        if unknown:
            raise ValueError(
                f"importance_types has {', '.join(map(repr, unknown))}; XGBoost knows "
                f"{', '.join(IMPORTANCE_TYPES)}"
            )


def options_of(session: FitSession) -> XGBoostOptions:
    """The options ``session``'s fit follows."""
    return XGBoostOptions.of(session.settings)
