"""The options of the Lightning integration: what ``autolog(lightning={...})`` takes
(:class:`LightningOptions`, over the common autolog options), and what a callback or
logger was given (:class:`Options`, whose None follows ``autolog()``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from mlhooks.plugin import FrameworkOptions, settings_for

FRAMEWORK = "lightning"
Model = Literal["final", "best"]
EpochStep = Literal["epoch", "global_step"]
MODELS: tuple[str, ...] = get_args(Model)
EPOCH_STEPS: tuple[str, ...] = get_args(EpochStep)


@dataclass(frozen=True)
class LightningOptions(FrameworkOptions):
    """``autolog(lightning={...})``: the common options, and these (see :class:`Options`)."""

    log_checkpoints: bool = True
    model: Model = "final"
    epoch_step: EpochStep = "epoch"


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
        registered_model_name: register the fit's model under this name, a new
            version per fit (with MLflow: from its logged model), as
            ``autolog(registered_model_name=...)`` does.
    """

    log_every_n_steps: int | None = None
    log_models: bool | None = None
    log_checkpoints: bool = True
    log_datasets: bool | None = None
    model: str = "final"
    epoch_step: str = "epoch"
    registered_model_name: str | None = None

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
        settings = settings_for(FRAMEWORK, LightningOptions)
        return cls(
            log_every_n_steps=settings.log_every_n_steps,
            log_checkpoints=settings.log_checkpoints,
            model=settings.model,
            epoch_step=settings.epoch_step,
        )

    def settings(self) -> LightningOptions:
        """The options a fit session sees: autolog's, with these on top."""
        changes: dict[str, Any] = {}
        if self.log_models is not None:
            changes["log_models"] = self.log_models
        if self.log_datasets is not None:
            changes["log_datasets"] = self.log_datasets
        if self.registered_model_name is not None:
            changes["registered_model_name"] = self.registered_model_name
        return replace(settings_for(FRAMEWORK, LightningOptions), **changes)
