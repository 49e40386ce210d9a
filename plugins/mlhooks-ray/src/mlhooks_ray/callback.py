"""The Tune callback a tracked sweep puts first among the user's: it tells the sweep
(:class:`~.sweep.Sweep`) which trials started, completed and failed. It runs on the
driver's thread, in Tune's loop; a failure of ours is one warning (raised under
``MLHOOKS_STRICT=1``), never the sweep's end."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from mlhooks.plugin import report_internal_error

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from .sweep import Sweep

SITE = "ray sweep tracking"


class SweepCallback(Callback):
    """Reports each trial's start and end to the sweep."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep

    def _ours(self, work: Callable[[], Any]) -> None:
        try:
            work()
        except Exception as error:  # noqa: BLE001 - never break the sweep
            report_internal_error(SITE, error)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ours(lambda: self.sweep.started(trial))

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ours(lambda: self.sweep.completed(trials, trial))

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ours(lambda: self.sweep.errored(trial))
