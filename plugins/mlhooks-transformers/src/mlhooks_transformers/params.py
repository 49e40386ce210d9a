"""What defines a Trainer's training, as params: ``TrainingArguments`` and the model's
config, merged as Hugging Face's own MLflow callback merges them (one flat namespace,
the training arguments winning a name both have), so that runs logged either way
compare; with the model's parameter counts. The complete arguments and config also go
as JSON files, since a param keeps short text only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession

LONGEST = 500
"""Longer values (a large ``id2label``, say) are left to the JSON files."""


def training_arguments(args: Any) -> dict[str, Any]:
    """``args.to_dict()``: the arguments, tokens masked as Transformers masks them."""
    values = args.to_dict()
    return dict(values) if isinstance(values, Mapping) else {}


def model_config(model: Any) -> dict[str, Any]:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    values = to_dict() if callable(to_dict) else None
    return dict(values) if isinstance(values, Mapping) else {}


def parameter_counts(model: Any) -> dict[str, int]:
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return {}
    total = trainable = 0
    for parameter in parameters():
        count = parameter.numel()
        total += count
        if parameter.requires_grad:
            trainable += count
    return {"num_parameters": total, "num_trainable_parameters": trainable}


def of_training(
    arguments: Mapping[str, Any], config: Mapping[str, Any], model: Any
) -> dict[str, Any]:
    """The params of a training: the config's entries, then the arguments', then the
    parameter counts; values longer than :data:`LONGEST` characters left out."""
    merged = {**config, **arguments, **parameter_counts(model)}
    return {key: value for key, value in merged.items() if len(str(value)) <= LONGEST}


def log_files(session: FitSession, arguments: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """``training_args.json`` and ``model_config.json``, complete, as artifacts: written
    on mlhooks' background worker (from these dictionaries, made now), once the
    training ends or at most a few minutes into it."""
    files = {
        name: json.dumps(values, indent=1, default=str)
        for name, values in (("training_args.json", arguments), ("model_config.json", config))
        if values
    }

    def write(directory: Path) -> None:
        for name, text in files.items():
            (directory / name).write_text(text)

    if files:
        session.in_background(write)
