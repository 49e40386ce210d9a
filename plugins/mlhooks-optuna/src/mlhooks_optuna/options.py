"""What ``autolog(optuna={...})`` takes besides the common options."""

from __future__ import annotations

from dataclasses import dataclass

from mlhooks.plugin import FrameworkOptions


@dataclass(frozen=True)
class OptunaOptions(FrameworkOptions):
    """The Optuna integration's options (see the plugin's README)."""

    log_intermediate_values: bool = True
    """Each ``trial.report(value, step)`` as the trial run's ``intermediate_value``."""
    share_study_run: bool = True
    """One run per study, continued by every ``optimize`` call and every process that
    shares the study's storage (its id kept in the study's user attribute
    ``mlhooks.run_id``). False: a run per ``optimize`` call, and nothing written to the
    study."""
