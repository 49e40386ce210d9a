"""What ``autolog(sklearn={...})`` takes besides the common options."""

from __future__ import annotations

from dataclasses import dataclass

from mlhooks.plugin import FitSession, FrameworkOptions


@dataclass(frozen=True)
class SklearnOptions(FrameworkOptions):
    """The scikit-learn integration's options (see the plugin's README)."""

    max_tuning_runs: int | None = None
    """Child runs per search, the best candidates first (None: all)."""
    log_training_metrics: bool = True
    """Metrics on the training data (each costs a ``predict``)."""
    log_post_training_metrics: bool = True
    """Metrics computed after the fit on a tracked model's predictions."""
    log_plots: bool = False
    """Confusion matrix, ROC and precision-recall curves of classifiers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tuning_runs is not None and self.max_tuning_runs < 0:
            raise ValueError(f"max_tuning_runs must be at least 0, not {self.max_tuning_runs}")


def options_of(session: FitSession) -> SklearnOptions:
    """The options ``session``'s fit follows."""
    return SklearnOptions.of(session.settings)
