"""What the backend wrote of each run, kept so that a logged model can be created from
its run without reading the run back: its experiment, params, the latest point of
each metric and its datasets.

Only runs this backend created are known whole; for any other (a run of
``mlflow.start_run()``, a run continued or replayed by another process) the store is
asked (:func:`facts_from_store`). At most :data:`KEPT_RUNS` runs are kept, the oldest
dropped first (they are asked for again if needed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric, Param

KEPT_RUNS = 1000

Point = tuple[float, int, int]
"""A metric's latest point: (value, step, timestamp)."""


@dataclass
class Dataset:
    """A dataset of the run, as MLflow names it in a metric: name and digest."""

    name: str
    digest: str
    context: str


@dataclass
class Linked:
    """A logged model of a run whose end links the run's final values to it."""

    model_id: str
    points: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each linked metric's (step, timestamp)."""
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class RunFacts:
    """One run as the backend wrote it."""

    experiment_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Point] = field(default_factory=dict)
    datasets: list[Dataset] = field(default_factory=list)
    models: list[Linked] = field(default_factory=list)
    """Models of the whole run (not checkpoints) that the run's end links to."""
    whole: bool = True
    """Whether this backend wrote the run from its start (else it was read back)."""

    def note_metrics(self, metrics: Iterable[Metric]) -> None:
        latest = self.metrics
        for metric in metrics:
            known = latest.get(metric.key)
            if known is None or (metric.step, metric.timestamp) >= known[1:]:
                latest[metric.key] = (metric.value, metric.step, metric.timestamp)

    def only_model(self) -> Linked | None:
        """The run's one model of the whole run, when it has exactly one: what the run
        logs from then on is linked to it as it is written."""
        return self.models[0] if len(self.models) == 1 else None

    def linked(self, metrics: list[Metric], model: Linked, mlflow_id: str) -> list[Metric]:
        """``metrics``, the latest point of each key linked to ``model`` with the
        dataset it was computed on. Only the latest: a model's metrics are its values,
        and every linked point is a second row for the store to write (a step loop
        after a fit would halve what a team's server takes); the run has every point."""
        latest: dict[str, int] = {}
        for index, metric in enumerate(metrics):
            known = latest.get(metric.key)
            if known is None or (metric.step, metric.timestamp) >= _when(metrics[known]):
                latest[metric.key] = index
        found = list(metrics)
        for index in latest.values():
            metric = metrics[index]
            dataset = self.dataset_of(metric.key)
            found[index] = Metric(
                metric.key,
                metric.value,
                metric.timestamp,
                metric.step,
                model_id=model.model_id,
                dataset_name=dataset.name if dataset else None,
                dataset_digest=dataset.digest if dataset else None,
                run_id=mlflow_id,
            )
        return found

    def dataset_of(self, key: str) -> Dataset | None:
        """The dataset a metric was computed on, as far as its key tells: the dataset
        whose name starts the key (``valid`` for ``valid-auc``, ``val`` for
        ``val_loss``; the longest such name), else the training data for a
        ``train...`` key."""
        named = [
            d
            for d in self.datasets
            if len(key) > len(d.name) and key.startswith(d.name) and key[len(d.name)] in "-_/. "
        ]
        if named:
            return max(named, key=lambda d: len(d.name))
        if key.startswith("train"):
            return next((d for d in self.datasets if d.context == "train"), None)
        return None


def _when(metric: Metric) -> tuple[int, int]:
    return (metric.step, metric.timestamp)


class RunFactsBook:
    """The facts of the runs this backend writes (only on MLflow 3, where they are
    needed), by mlhooks run id."""

    def __init__(self, limit: int = KEPT_RUNS) -> None:
        self._runs: OrderedDict[str, RunFacts] = OrderedDict()
        self._limit = limit

    def started(self, run_id: str, experiment_id: str) -> None:
        """A run this backend created: everything it holds goes through here."""
        self.keep(run_id, RunFacts(experiment_id))

    def get(self, run_id: str) -> RunFacts | None:
        return self._runs.get(run_id)

    def keep(self, run_id: str, facts: RunFacts) -> None:
        """Facts of ``run_id`` (also read back from the store), kept for its next model,
        its end and what it logs after (a metric computed on the model's predictions)."""
        self._runs[run_id] = facts
        self._runs.move_to_end(run_id)
        while len(self._runs) > self._limit:
            self._runs.popitem(last=False)

    def batch(
        self, run_id: str, metrics: list[Metric], params: list[Param], linked: Linked | None
    ) -> None:
        """What a batch of ``run_id`` wrote; ``linked``: the model it was linked to."""
        facts = self._runs.get(run_id)
        if facts is None:
            return
        facts.note_metrics(metrics)
        for param in params:
            facts.params[param.key] = param.value
        if linked is not None:
            linked.points.update({m.key: facts.metrics[m.key][1:] for m in metrics})

    def dataset(self, run_id: str, name: str, digest: str, context: str) -> None:
        facts = self._runs.get(run_id)
        if facts is not None:
            facts.datasets.append(Dataset(name, digest, context))


def facts_from_store(client: Any, mlflow_id: str) -> RunFacts:
    """The facts of a run this backend did not write whole, read from the store."""
    run = client.get_run(mlflow_id)
    facts = RunFacts(run.info.experiment_id, params=dict(run.data.params), whole=False)
    metrics = getattr(run.data, "_metric_objs", None)  # the latest points, with steps
    if metrics is None:  # pragma: no cover - every MLflow 3 keeps them
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in run.data.metrics.items()]
    facts.note_metrics(metrics)
    inputs = run.inputs.dataset_inputs if run.inputs is not None else []
    for found in inputs:
        tags = {tag.key: tag.value for tag in found.tags}
        context = tags.get("mlflow.data.context", "")
        facts.datasets.append(Dataset(found.dataset.name, found.dataset.digest, context))
    return facts
