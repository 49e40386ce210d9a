"""Epoch-level values and evaluation values, as the tracker logs them.

A validation that ends with the training epoch's last batch holds its values back, so
that they go out with the epoch's training values in one ``epoch_end``. Step-level
evaluation values (``on_step=True`` in ``validation_step``/``test_step``) are stored at a
count of evaluation batches per stage that keeps growing across validations, so that
no step repeats.
"""

from __future__ import annotations

from mlhooks.plugin import FitSession


class EpochMetrics:
    """The epoch-level and evaluation values of one Trainer."""

    def __init__(self) -> None:
        self.held: dict[str, float] = {}
        """Validation values waiting for the epoch's training values."""
        self.eval_steps: dict[str, int] = {}

    def reset(self) -> None:
        """A new Trainer call: nothing held."""
        self.held = {}

    def hold(self, values: dict[str, float]) -> None:
        """Keep validation ``values`` for the end of the training epoch."""
        self.held.update(values)

    def log_held(self, session: FitSession, step: int) -> None:
        """Log what is still held (the call ends before its epoch did)."""
        session.log_metrics(self.held, step=step)
        self.held = {}

    def epoch_end(
        self, session: FitSession, epoch: int, values: dict[str, float], step: int
    ) -> None:
        """The training epoch ended with ``values``; held validation values join them."""
        merged = {**self.held, **values}
        self.held = {}
        session.epoch_end(epoch, merged, step=step)

    def eval_step(self, session: FitSession, stage: str, values: dict[str, float]) -> None:
        """Step-level evaluation ``values`` of ``stage``, at its next evaluation step."""
        step = self.eval_steps.get(stage, 0)
        self.eval_steps[stage] = step + 1
        session.log_metrics(values, step=step)
