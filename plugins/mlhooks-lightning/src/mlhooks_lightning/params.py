"""What defines a Lightning experiment, as flat params: hyper-parameters, trainer
settings, optimizers and schedulers, parameter counts; and a text model summary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_TRAINER_SETTINGS = (
    "max_epochs",
    "max_steps",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "num_nodes",
    "check_val_every_n_epoch",
    "val_check_interval",
)


def of_call(trainer: Any, module: Any, stage: str) -> dict[str, Any]:
    """The params of a ``fit`` (everything below) or of a ``validate``/``test`` call
    (hyper-parameters and parameter counts)."""
    values = hyperparameters(trainer, module)
    values.update(parameter_counts(module))
    if stage == "fit":
        values.update(trainer_settings(trainer))
        values.update(optimizers(trainer))
        values.update(early_stopping_settings(trainer))
    return values


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``; other values as they are."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def hyperparameters(trainer: Any, module: Any) -> dict[str, Any]:
    """``save_hyperparameters()`` values of the module and of the datamodule; a
    datamodule key that clashes with a different module value gets ``datamodule.``."""
    params = dict(flatten(dict(getattr(module, "hparams", {}) or {})))
    datamodule = getattr(trainer, "datamodule", None)
    for key, value in flatten(dict(getattr(datamodule, "hparams", {}) or {})):
        if key in params and params[key] != value:
            key = f"datamodule.{key}"
        params.setdefault(key, value)
    return params


def trainer_settings(trainer: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in _TRAINER_SETTINGS:
        value = getattr(trainer, name, None)
        if name == "max_steps" and value == -1:
            continue
        if value is not None:
            settings[f"trainer.{name}"] = value
    settings["trainer.devices"] = getattr(trainer, "num_devices", None)
    settings["trainer.strategy"] = type(trainer.strategy).__name__
    settings["trainer.accelerator"] = type(trainer.accelerator).__name__
    return {k: v for k, v in settings.items() if v is not None}


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) or (
        isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)
    )


def optimizers(trainer: Any) -> dict[str, Any]:
    """Each optimizer's class and defaults; each scheduler's class and settings."""
    params: dict[str, Any] = {}
    opts = list(getattr(trainer, "optimizers", []) or [])
    for index, optimizer in enumerate(opts):
        prefix = "optimizer" if len(opts) == 1 else f"optimizer.{index}"
        params[f"{prefix}.class"] = type(optimizer).__name__
        for key, value in getattr(optimizer, "defaults", {}).items():
            if _scalar(value):
                params[f"{prefix}.{key}"] = value
    configs = list(getattr(trainer, "lr_scheduler_configs", []) or [])
    for index, config in enumerate(configs):
        prefix = "scheduler" if len(configs) == 1 else f"scheduler.{index}"
        scheduler = config.scheduler
        params[f"{prefix}.class"] = type(scheduler).__name__
        params[f"{prefix}.interval"] = config.interval
        params[f"{prefix}.frequency"] = config.frequency
        if config.monitor:
            params[f"{prefix}.monitor"] = config.monitor
        try:
            state = scheduler.state_dict()
        except Exception:  # noqa: BLE001 - a custom scheduler may not have one
            state = {}
        for key, value in state.items():
            if key.startswith("_") or key in ("last_epoch", "base_lrs", "verbose"):
                continue
            if _scalar(value):
                params[f"{prefix}.{key}"] = value
    return params


def parameter_counts(module: Any) -> dict[str, int]:
    total = trainable = 0
    for parameter in module.parameters():
        count = parameter.numel()
        total += count
        if parameter.requires_grad:
            trainable += count
    return {"model.params.total": total, "model.params.trainable": trainable}


def early_stopping_settings(trainer: Any) -> dict[str, Any]:
    callback = getattr(trainer, "early_stopping_callback", None)
    if callback is None:
        return {}
    return {
        "early_stopping.monitor": callback.monitor,
        "early_stopping.patience": callback.patience,
        "early_stopping.mode": callback.mode,
        "early_stopping.min_delta": abs(float(callback.min_delta)),
    }


def summary(module: Any) -> str:
    """A plain table of the module's direct children and their parameter counts
    (no forward pass, unlike Lightning's ModelSummary with an example input)."""
    rows = [("name", "type", "params")]
    for name, child in module.named_children():
        count = sum(p.numel() for p in child.parameters())
        rows.append((name, type(child).__name__, f"{count:,}"))
    counts = parameter_counts(module)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(
        f"{type(module).__qualname__}: {counts['model.params.total']:,} parameters, "
        f"{counts['model.params.trainable']:,} trainable"
    )
    return "\n".join(lines) + "\n"
