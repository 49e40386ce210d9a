"""What ``autolog(lightgbm={...})`` takes besides the common options."""

from __future__ import annotations

from dataclasses import dataclass

from mlhooks.plugin import FitSession, FrameworkOptions

IMPORTANCE_TYPES = ("split", "gain")
"""What ``Booster.feature_importance(importance_type=...)`` knows."""


@dataclass(frozen=True)
class LightGBMOptions(FrameworkOptions):
    """The LightGBM integration's options (see the plugin's README)."""

    importance_types: tuple[str, ...] = IMPORTANCE_TYPES
    """Feature importance types logged as JSON and charts (empty: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [kind for kind in self.importance_types if kind not in IMPORTANCE_TYPES]
        if unknown:
            raise ValueError(
                f"importance_types has {', '.join(map(repr, unknown))}; LightGBM knows "
                f"{', '.join(IMPORTANCE_TYPES)}"
            )


def options_of(session: FitSession) -> LightGBMOptions:
    """The options ``session``'s fit follows."""
    return LightGBMOptions.of(session.settings)
