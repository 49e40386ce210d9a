"""Models read back from the stores that hold :class:`~mlhooks.core.types.RunData` (the
local and in-memory stores): one loaded by run and name, and every model as a row of
``search_models`` in the columns the MLflow backend gives its logged models.

A row is one model: ``model_id`` (None here: these stores name a model by its run and
name), ``name``, ``run_id``, ``experiment_id``, ``flavor``, ``step`` (a checkpoint's
``global_step`` or ``iteration``; None for the model of a whole fit), ``status``,
``metrics.<key>`` (for a model of the whole fit, the run's final values; for a
checkpoint, its monitored value), ``params.<key>`` (the run's) and ``tags.mlhooks.<fact>``
(the model's plain facts: its class, a checkpoint's monitor, score, epoch, ...).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mlhooks.backends.query import Row, matches, ordered
from mlhooks.core.types import ModelArtifact, RunData

MODEL_ATTRIBUTES = frozenset(
    {"model_id", "name", "run_id", "experiment_id", "flavor", "step", "status", "creation_time"}
)
_NOT_FACTS = frozenset({"log_signature", "log_input_example", "sample_input"})


def model_named(run_id: str, models: Sequence[ModelArtifact], name: str) -> ModelArtifact:
    """The model ``name`` among ``models`` of run ``run_id`` (the latest step's, when
    several were stored); ``KeyError`` naming the run's models when there is none."""
    found = [model for model in models if model.name == name]
    if not found:
        names = sorted({model.name for model in models})
        raise KeyError(
            f"run {run_id!r} has no model {name!r}"
            + (f"; its models: {', '.join(names)}" if names else "; it has no models")
        )
    return max(found, key=lambda model: model.step if model.step is not None else -1)


def loaded(model: ModelArtifact) -> Any:
    """The model object, unpickled from its payload; a model kept as a file (a
    checkpoint) or a folder (a Transformers ``save_pretrained`` one) as the
    :class:`~pathlib.Path` of it, for its framework to load
    (``Module.load_from_checkpoint(path)``, ``xgboost.Booster(model_file=path)``,
    ``AutoModelFor....from_pretrained(path)``): the stored file or folder, or a copy of
    the bytes a store kept in memory."""
    if model.payload is not None and model.format in ModelArtifact.PICKLED:
        return model.load()
    if model.payload is not None:
        name = Path(model.path).name if model.path else "model"
        copy = Path(tempfile.mkdtemp(prefix="mlhooks-model-")) / name
        copy.write_bytes(model.payload)
        return copy
    if model.path is not None:
        return Path(model.path)
    raise ValueError(f"model {model.name!r} has nothing stored to load")


def model_rows(
    runs: Iterable[RunData], experiment: str | None, filter_string: str, order_by: Sequence[str]
) -> list[Row]:
    """What ``search_models`` asks of a backend, for stores that hold RunData: rows of
    the experiment's models that pass the filter, ordered (newest runs first unless
    ``order_by`` says otherwise)."""
    rows = [
        model_row(data, model)
        for data in sorted(runs, key=lambda d: d.info.start_time, reverse=True)
        if experiment is None or data.info.experiment == experiment
        for model in data.models
    ]
    kept = [row for row in rows if matches(row, filter_string, MODEL_ATTRIBUTES)]
    return ordered(kept, order_by, MODEL_ATTRIBUTES) if order_by else kept


def model_row(data: RunData, model: ModelArtifact) -> Row:
    """One model of run ``data`` as a row."""
    row: Row = {
        "model_id": None,
        "name": model.name,
        "run_id": data.info.run_id,
        "experiment_id": data.info.experiment,
        "flavor": model.flavor,
        "step": model.step,
        "status": "READY",
        "creation_time": None,
    }
    if model.step is None:
        row.update({f"metrics.{k}": v for k, v in data.latest().items()})
    else:
        monitor, score = model.metadata.get("monitor"), model.metadata.get("score")
        if isinstance(monitor, str) and isinstance(score, int | float):
            row[f"metrics.{monitor}"] = float(score)
    row.update({f"params.{k}": v for k, v in data.params.items()})
    for fact, value in model.metadata.items():
        if fact not in _NOT_FACTS and isinstance(value, bool | int | float | str):
            row[f"tags.mlhooks.{fact}"] = str(value)
    return row
