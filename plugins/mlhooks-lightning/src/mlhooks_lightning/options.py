"""The options of the Lightning integration, from the callback's arguments or from
``autolog(lightning={...})`` (over the common autolog settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlhooks.plugin import FrameworkSettings, settings_for

FRAMEWORK = "lightning"
EPOCH_STEPS = ("epoch", "global_step")
MODELS = ("final", "best")


@dataclass(frozen=True)
class Options:
    """What to log. None means: as ``autolog()`` (or its defaults) says.

    Args:
        log_every_n_steps: step-level metrics every N optimizer steps (default: the
            Trainer's ``log_every_n_steps``). MlhooksLogger follows the Trainer's.
        log_models: log the model at the end of ``fit`` as an MLflow pytorch model.
        log_checkpoints: report each checkpoint ModelCheckpoint saves.
        log_datasets: fingerprint the datasets behind the dataloaders.
        model: ``"final"`` (the weights at the end of fit) or ``"best"`` (those of the
            best checkpoint of ``trainer.checkpoint_callback``, when there is one).
        epoch_step: where epoch-level values are stored: ``"epoch"`` (0, 1, ...) or
            ``"global_step"`` (the optimizer steps taken so far).
    """

    log_every_n_steps: int | None = None
    log_models: bool | None = None
    log_checkpoints: bool = True
    log_datasets: bool | None = None
    model: str = "final"
    epoch_step: str = "epoch"

    def __post_init__(self) -> None:
        if self.log_every_n_steps is not None and self.log_every_n_steps < 0:
            raise ValueError(f"log_every_n_steps must be >= 0, not {self.log_every_n_steps}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {self.model!r}")
        if self.epoch_step not in EPOCH_STEPS:
            raise ValueError(f"epoch_step must be one of {EPOCH_STEPS}, not {self.epoch_step!r}")

    @classmethod
    def from_autolog(cls) -> Options:
        """The options ``autolog(lightning={...})`` asked for."""
        settings = settings_for(FRAMEWORK)
        return cls(
            log_every_n_steps=settings.get("log_every_n_steps"),
            log_checkpoints=bool(settings.get("log_checkpoints", True)),
            model=settings.get("model", "final"),
            epoch_step=settings.get("epoch_step", "epoch"),
        )

    def settings(self) -> FrameworkSettings:
        """The settings a fit session sees: autolog's, with these options on top."""
        values: dict[str, Any] = dict(settings_for(FRAMEWORK))
        if self.log_models is not None:
            values["log_models"] = self.log_models
        if self.log_datasets is not None:
            values["log_datasets"] = self.log_datasets
        return FrameworkSettings(FRAMEWORK, values)
