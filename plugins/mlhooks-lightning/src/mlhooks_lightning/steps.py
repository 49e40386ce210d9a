"""Step-level training values and learning rates, every ``log_every_n_steps``
optimizer steps, as the callback logs them (the logger gets them from Lightning).

A batch's values are read at the next hook (the next batch's start, the validation
start, the epoch's end), so that every hook of that batch had its chance to log; the
learning rates are read before the batch whose step is due, as that step uses them.
This runs for every training batch: it keeps to a few attribute reads until a step
is due.
"""

from __future__ import annotations

from typing import Any

from mlhooks.plugin import FitSession

from . import compat


class StepMetrics:
    """The step-level values of one Trainer's training batches."""

    def __init__(self) -> None:
        self.every = 0
        """Log every this many optimizer steps (0: never)."""
        self.last_step = 0
        """The global step when the last training batch started."""
        self.batch_ran = False
        """A training batch started and its step-level values are not logged yet."""
        self.rates: dict[str, float] | None = None
        """The learning rates read before the batch whose step is due."""
        self.lr_names: list[tuple[Any, list[str]]] = []

    def reset(self) -> None:
        """A new Trainer call: nothing ran yet."""
        self.batch_ran = False
        self.rates = None

    def start(self, every: int, step: int, optimizers: list[Any]) -> None:
        """The tracked call starts at global ``step``, logging every ``every`` steps
        the learning rates of ``optimizers``."""
        self.every = every
        self.last_step = step
        self.lr_names = lr_names(optimizers)

    def batch_start(self, trainer: Any, session: FitSession, from_logger: bool) -> None:
        """A training batch starts: log the previous one's values if due (unless
        ``from_logger``: a logger supplies the metrics), and read the learning rates
        this batch's step will use when that step is due."""
        step = trainer.global_step  # (restored only after on_fit_start)
        every = self.every
        if (
            self.batch_ran
            and not from_logger
            and every
            and step // every != self.last_step // every
        ):
            self.batch_ran = False
            self._log(trainer, session, step)
        self.last_step = step
        self.batch_ran = True
        if every and (step + 1) // every != step // every:
            self.rates = self.learning_rates()

    def flush(self, trainer: Any, session: FitSession, from_logger: bool) -> None:
        """Log the last training batch's values, with the learning rates, when the
        optimizer steps it took crossed a multiple of ``every``."""
        if not self.batch_ran:
            return
        self.batch_ran = False
        step, every = trainer.global_step, self.every
        if from_logger or not every or step // every == self.last_step // every:
            return
        self._log(trainer, session, step)

    def _log(self, trainer: Any, session: FitSession, step: int) -> None:
        values = compat.train_step_values(trainer)
        values.update(self.rates or self.learning_rates())
        self.rates = None
        session.log_metrics(values, step=step)

    def learning_rates(self) -> dict[str, float]:
        """The current learning rate of every param group, by LearningRateMonitor's names."""
        rates: dict[str, float] = {}
        for optimizer, names in self.lr_names:
            for name, group in zip(names, optimizer.param_groups, strict=False):
                rates[name] = float(group["lr"])
        return rates


def lr_names(optimizers: list[Any]) -> list[tuple[Any, list[str]]]:
    """``lr-<Optimizer>`` (``-<i>`` when classes repeat), ``/pg<j>`` per param group
    when there are several: LearningRateMonitor's names."""
    classes = [type(o).__name__ for o in optimizers]
    out = []
    for index, optimizer in enumerate(optimizers):
        base = f"lr-{classes[index]}"
        if classes.count(classes[index]) > 1:
            base += f"-{index}"
        groups = optimizer.param_groups
        names = [base] if len(groups) == 1 else [f"{base}/pg{j + 1}" for j in range(len(groups))]
        out.append((optimizer, names))
    return out
