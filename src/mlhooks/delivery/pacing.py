"""When a lane's writer writes: often enough that data lands soon, rarely enough that
it does not compete with training for the CPU and the GIL."""

from __future__ import annotations

import time

from mlhooks.core import activity


class Pacer:
    """The rests of one writer thread between its rounds of writing."""

    def __init__(
        self,
        interval: float,
        busy_factor: float = 9.0,
        max_interval: float = 2.0,
        training_interval: float = 10.0,
    ) -> None:
        self.interval = interval
        """The shortest rest: the backend's ``write_interval`` unless the lane sets one."""
        self.busy_factor = busy_factor
        """After a round of writing that took t seconds, the writer rests at least
        ``busy_factor * t`` (at most ``max_interval``) unless a flush asks: it holds
        the GIL at most about 1 / (1 + busy_factor) of the time, so training threads
        (XGBoost, torch: native code that releases the GIL) are not slowed by a
        Python-heavy backend such as MLflow's, and batches grow instead."""
        self.max_interval = max(max_interval, interval)
        self.training_interval = training_interval
        """While a tracked fit runs in the process, the writer writes at most this often
        (unless a flush asks, or items spilled to disk): a short fit's data is stored
        right after it, a long one's every few seconds, and meanwhile the writer does
        not compete with training for the CPU and the GIL."""
        self.urgent = False
        """A flush is waiting: write now, even while training."""

    def rest_after(self, busy: float) -> float:
        """The rest after a round of writing that took ``busy`` seconds."""
        return min(self.max_interval, max(self.interval, busy * self.busy_factor))

    def wait_time(self, rest: float, next_probe: float | None) -> float:
        """How long to sleep before the next round (unless woken): ``rest``, or while
        the backend is down, until its next probe (waking up now and then)."""
        if next_probe is None:
            return rest
        return max(0.0, min(self.interval * 20, next_probe - time.monotonic()))

    def yields_to_training(self, last: float, behind: bool) -> bool:
        """Whether to skip this round: a tracked fit trains, nobody waits for a flush,
        the writer is not ``behind`` (closing, spilling or spooling) and it wrote less
        than ``training_interval`` ago (at ``last``)."""
        return (
            activity.training()
            and not self.urgent
            and not behind
            and time.monotonic() - last < self.training_interval
        )
