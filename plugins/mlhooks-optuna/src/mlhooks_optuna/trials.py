"""One trial's run: a child of the study's run, active on the thread that runs the
trial while the objective runs, so that what the objective fits or logs lands in it."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlhooks
from mlhooks.plugin import FitSession, FrameworkOptions, RunInfo, RunStatus, open_run

FRAMEWORK = "optuna"
INTERMEDIATE = "intermediate_value"
"""The metric each ``trial.report(value, step)`` is stored as, at ``step``."""

FINISHED_STATES = ("COMPLETE", "PRUNED")
"""Trial states whose run ends FINISHED (a failed trial's run ends FAILED or KILLED)."""


def value_names(metric_names: Sequence[str] | None, objectives: int) -> list[str]:
    """The metric names of a trial's values: the study's ``metric_names`` when it has
    them, else ``value`` (one objective) or ``value_0``, ``value_1``, ..."""
    if metric_names and len(metric_names) == objectives:
        return list(metric_names)
    return ["value"] if objectives == 1 else [f"value_{i}" for i in range(objectives)]


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as Optuna records it."""

    state: str
    """``COMPLETE``, ``PRUNED`` or ``FAIL`` (an unfinished trial: ``RUNNING``)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    distributions: Mapping[str, Any] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    values: Sequence[float] | None = None

    @classmethod
    def of(cls, trial: Any, state: str | None = None) -> Outcome:
        """The outcome of ``trial`` (a ``FrozenTrial``, or a live ``Trial`` with the
        ``state`` it ends in)."""
        values = getattr(trial, "values", None) if state is None else None
        return cls(
            state=state or trial.state.name,
            params=dict(trial.params),
            distributions=dict(trial.distributions),
            user_attrs=dict(trial.user_attrs),
            values=list(values) if values is not None else None,
        )

    def status(self, error: BaseException | None) -> RunStatus:
        if self.state in FINISHED_STATES:
            return RunStatus.FINISHED
        return RunStatus.for_exception(error) if error is not None else RunStatus.FAILED

    def tags(self) -> dict[str, Any]:
        tags: dict[str, Any] = {"optuna.trial.state": self.state}
        tags.update({f"optuna.distribution.{k}": str(d) for k, d in self.distributions.items()})
        tags.update({f"optuna.user_attr.{k}": v for k, v in self.user_attrs.items()})
        return tags


class TrialRun:
    """The run of one trial, from the objective's start to the trial's end."""

    def __init__(
        self,
        number: int,
        parent: RunInfo,
        settings: FrameworkOptions,
        *,
        log_intermediate: bool,
    ) -> None:
        self.number = number
        self.log_intermediate = log_intermediate
        self.key = 0
        """What the tracker finds this run by while the trial runs (``id()`` of its ``Trial``)."""
        name = f"trial-{number}"
        self.run = open_run(name, managed=True, parent=parent, tags=settings.extra_tags).info
        self.session = FitSession(
            FRAMEWORK, name, run=self.run, tags={"optuna.trial.number": number}, settings=settings
        )
        try:
            self.session.start()
        except BaseException:
            mlhooks.end_run(RunStatus.FAILED, run=self.run)
            raise
        self._every = settings.log_every_n_steps or 1
        self._steps: set[int] = set()
        self._lock = threading.Lock()
        self.ended = False

    def report(self, value: float, step: int) -> None:
        """An intermediate value; as in Optuna, the first one reported at a step counts."""
        with self._lock:
            if self.ended or step in self._steps:
                return
            self._steps.add(step)
        if step % self._every == 0:
            self.session.epoch_end(step, {INTERMEDIATE: value})

    def end(self, outcome: Outcome, names: Sequence[str], error: BaseException | None) -> None:
        """Log the trial's params, state and values, then end its run (once)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
        try:
            self.session.log_params(outcome.params)
            self.session.set_tags(outcome.tags())
            if outcome.values is not None:
                self.session.log_metrics(dict(zip(names, outcome.values, strict=False)))
        finally:
            try:
                self.session.end(error)
            finally:
                mlhooks.end_run(outcome.status(error), run=self.run)
