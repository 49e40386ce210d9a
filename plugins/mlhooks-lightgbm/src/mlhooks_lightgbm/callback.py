"""The callback mlhooks hands to LightGBM's training loop, first in a new list (never
the user's list itself), so that a user's callback that stops training cannot make it
miss that iteration.

:class:`IterationLogger` reports every boosting iteration, with its evaluation results
(custom metrics included), through the fit's session: a few dict lookups and one
``epoch_end`` per iteration (the values stored, and ``on_epoch_end`` for listeners),
which only enqueues. A failure of ours warns once and training goes on
(``MLHOOKS_STRICT=1`` raises it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlhooks.plugin import FitSession, report_internal_error

SITE = "lightgbm iteration logging"
FIRST = -(2**31)
"""The ``order`` LightGBM sorts callbacks by: ours before the user's (which LightGBM
numbers from ``-len(callbacks)``) and its own (10 to 30)."""


class IterationLogger:
    """Reports each iteration as an epoch (epoch = step = LightGBM's iteration index,
    from 0, or from the ``init_model``'s iterations when training continues) with its
    ``<dataset>-<metric>`` values, for every validation set and metric (``-mean`` and
    ``-stdv`` for ``lightgbm.cv``), every ``every_n`` iterations and the last. Without
    validation sets an iteration has no values, and is still reported to listeners."""

    before_iteration = False

    def __init__(self, session: FitSession, every_n: int = 1, cv: bool = False) -> None:
        self.order = FIRST  # an instance attribute: LightGBM sets one where there is none
        self._epoch_end = session.epoch_end
        self._every = max(1, every_n)
        self._cv = cv
        self._keys: dict[tuple[str, str], Any] = {}
        self.last_iteration = -1
        self._results: Sequence[Any] = ()
        self._logged = -1
        self.model: Any = None
        """What LightGBM trains (a ``CVBooster`` for ``cv``)."""

    def __call__(self, env: Any) -> None:
        self.last_iteration = iteration = env.iteration
        self.model = env.model
        self._results = env.evaluation_result_list or ()
        if self._every == 1 or (iteration - env.begin_iteration) % self._every == 0:
            self._report(iteration)

    def finish(self) -> None:
        """After training: the last iteration, when ``every_n`` skipped it."""
        if self.last_iteration > self._logged:
            self._report(self.last_iteration)

    def _report(self, iteration: int) -> None:
        self._logged = iteration
        try:
            self._epoch_end(iteration, self.metrics(self._results))
        except Exception as error:  # noqa: BLE001 - never break the training loop
            report_internal_error(SITE, error)

    def metrics(self, results: Sequence[Any]) -> dict[str, Any]:
        """An iteration's evaluation results by key. LightGBM's results are
        ``(dataset, metric, value, higher is better[, stdv])`` tuples, the values numpy
        floats (made Python floats here: the session takes those fastest)."""
        metrics: dict[str, Any] = {}
        keys = self._keys
        for result in results:
            key = keys.get((result[0], result[1]))
            if key is None:
                key = keys[(result[0], result[1])] = self._key(result[0], result[1])
            if self._cv:
                metrics[key[0]] = as_float(result[2])
                metrics[key[1]] = as_float(result[4])
            else:
                metrics[key] = as_float(result[2])
        return metrics

    def _key(self, dataset: str, metric: str) -> Any:
        key = f"{dataset}-{metric_key(metric)}"
        return (f"{key}-mean", f"{key}-stdv") if self._cv else key


def as_float(value: Any) -> Any:
    """A Python float where ``value`` is a number (LightGBM's are numpy floats); other
    values as they are, for the session to skip with a warning (a custom metric's)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def metric_key(name: str) -> str:
    """LightGBM's metric name as a key every store takes: ``ndcg@5`` becomes
    ``ndcg_at_5``, as the XGBoost plugin names it, since stores refuse ``@``."""
    return name.replace("@", "_at_")


def training_callbacks(given: Sequence[Any] | None, logger: IterationLogger) -> list[Any]:
    """A new list for the training loop: ours, then the user's, in order (LightGBM
    numbers the user's by their position from the end, which ours before them keeps)."""
    return [logger, *(given or ())]
