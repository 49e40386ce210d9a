"""The callbacks mlhooks hands to XGBoost's training loop (never the user's list itself:
a new list with the user's callbacks in their order).

:class:`RoundLogger` reports every boosting round, with its evaluation results (custom
metrics included), through the fit's session: a few dict lookups and one ``epoch_end``
per round (the values stored, and ``on_epoch_end`` for listeners), which only
enqueues; a failure of ours warns once and training goes on (``MLHOOKS_STRICT=1``
raises it). :class:`CheckpointReporter` stands in for a
``TrainingCheckPoint`` and reports each file it saves as a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from xgboost.callback import TrainingCallback, TrainingCheckPoint

from mlhooks.plugin import FitSession, ModelArtifact, report_internal_error

ROUND_SITE = "xgboost round logging"
EvalsLog = TrainingCallback.EvalsLog


class RoundLogger(TrainingCallback):
    """Reports each boosting round as an epoch (epoch = step = round) with its
    ``<eval name>-<metric>`` values, for every eval set and metric (``-mean`` and
    ``-std`` for ``xgboost.cv``), every ``every_n`` rounds and the last. Without eval
    sets a round has no values, and is still reported to listeners."""

    def __init__(self, session: FitSession, every_n: int = 1, cv: bool = False) -> None:
        super().__init__()
        self._epoch_end = session.epoch_end
        self._every = max(1, every_n)
        self._cv = cv
        self.history: EvalsLog = {}
        """XGBoost's evaluation history (its own dict, kept by reference)."""
        self.first_round: int | None = None
        self.last_round = -1
        self._logged = -1
        self.best_iteration: int | None = None
        """For ``xgboost.cv`` with early stopping, read from the folds after training."""

    def after_iteration(self, model: Any, epoch: int, evals_log: EvalsLog) -> bool:
        self.history = evals_log
        if self.first_round is None:
            self.first_round = epoch
        self.last_round = epoch
        if (epoch - self.first_round) % self._every == 0:
            try:
                self._epoch_end(epoch, self.round_metrics(-1))
            except Exception as error:  # noqa: BLE001 - never break the training loop
                report_internal_error(ROUND_SITE, error)
            self._logged = epoch
        return False

    def after_training(self, model: Any) -> Any:
        try:
            if self.last_round > self._logged:  # skipped by every_n
                self._epoch_end(self.last_round, self.round_metrics(-1))
                self._logged = self.last_round
        except Exception as error:  # noqa: BLE001 - never break the training loop
            report_internal_error(ROUND_SITE, error)
        if self._cv:
            try:
                self.best_iteration = int(model.best_iteration)
            except (AttributeError, TypeError, ValueError):
                self.best_iteration = None
        return model

    def round_metrics(self, index: int) -> dict[str, float]:
        """Every metric of the round at ``index`` in the history (-1: the last)."""
        metrics: dict[str, float] = {}
        for data, scores in self.history.items():
            for name, values in scores.items():
                metric = metric_key(name)
                value: Any = values[index]
                if self._cv:  # (mean, std)
                    metrics[f"{data}-{metric}-mean"] = value[0]
                    metrics[f"{data}-{metric}-std"] = value[1]
                else:
                    metrics[f"{data}-{metric}"] = value
        return metrics

    def metrics_at(self, round_: int) -> dict[str, float]:
        """The metrics of boosting round ``round_`` (empty if it was not evaluated)."""
        if self.first_round is None or not self.first_round <= round_ <= self.last_round:
            return {}
        return self.round_metrics(round_ - self.first_round)


def metric_key(name: str) -> str:
    """XGBoost's metric name as a key every store takes: ``ndcg@5`` becomes
    ``ndcg_at_5``, as MLflow's own XGBoost autologging names it."""
    return name.replace("@", "_at_")


class CheckpointReporter(TrainingCallback):
    """Runs a ``TrainingCheckPoint`` unchanged and reports each file it saves."""

    def __init__(self, checkpoint: TrainingCheckPoint, report: Callable[[str, int], None]) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self._report = report

    def before_training(self, model: Any) -> Any:
        return self.checkpoint.before_training(model)

    def after_training(self, model: Any) -> Any:
        return self.checkpoint.after_training(model)

    def before_iteration(self, model: Any, epoch: int, evals_log: EvalsLog) -> bool:
        return bool(self.checkpoint.before_iteration(model, epoch, evals_log))

    def after_iteration(self, model: Any, epoch: int, evals_log: EvalsLog) -> bool:
        checkpoint = self.checkpoint
        # TrainingCheckPoint saves when its round counter reaches its interval.
        due = getattr(checkpoint, "_epoch", None) == getattr(checkpoint, "_iterations", -1)
        stop = bool(checkpoint.after_iteration(model, epoch, evals_log))
        if due:
            try:
                path = saved_path(checkpoint, epoch)
                if path is not None and os.path.isfile(path):
                    self._report(path, epoch)
            except Exception as error:  # noqa: BLE001 - never break the training loop
                report_internal_error("xgboost checkpoint report", error)
        return stop


def saved_path(checkpoint: TrainingCheckPoint, epoch: int) -> str | None:
    """Where ``checkpoint`` saved at ``epoch`` (XGBoost's naming), None if unknown."""
    try:
        extension = "pkl" if checkpoint._as_pickle else checkpoint.default_format
        name = f"{checkpoint._name}_{epoch + checkpoint._start}.{extension}"
        return os.path.join(checkpoint._path, name)
    except AttributeError:
        return None


def checkpoint_artifact(path: str, epoch: int) -> ModelArtifact:
    """A saved checkpoint file as a model, in the format XGBoost wrote it."""
    stem, extension = os.path.splitext(os.path.basename(path))
    return ModelArtifact(
        name=f"checkpoints/{stem}",
        flavor="xgboost",
        path=path,
        format="pickle" if extension == ".pkl" else extension.lstrip("."),
        metadata={"iteration": epoch, "checkpoint": True},
    )


def training_callbacks(
    given: Sequence[TrainingCallback] | None,
    logger: RoundLogger,
    report_checkpoint: Callable[[str, int], None] | None,
) -> list[TrainingCallback]:
    """A new list for the training loop: ours first (so that a user's callback
    stopping training cannot skip a round's metrics), then the user's, in order."""
    callbacks: list[TrainingCallback] = [logger]
    for callback in given or ():
        if report_checkpoint is not None and isinstance(callback, TrainingCheckPoint):
            callback = CheckpointReporter(callback, report_checkpoint)
        callbacks.append(callback)
    return callbacks
