"""The options of the Transformers integration: what ``autolog(transformers={...})``
takes (:class:`TransformersOptions`, over the common autolog options), and what an
explicit :class:`~mlhooks_transformers.MlhooksCallback` was given (:class:`Options`,
whose None follows ``autolog()``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mlhooks.plugin import FrameworkOptions, settings_for

FRAMEWORK = "transformers"


@dataclass(frozen=True)
class TransformersOptions(FrameworkOptions):
    """``autolog(transformers={...})``: the common options, and these."""

    log_checkpoints: bool = True
    """Each checkpoint folder the Trainer saves, as the run's artifacts under
    ``checkpoints/checkpoint-<step>`` (only when ``log_models`` is on too)."""
    task: str | None = None
    """The pipeline task of the final model saved with MLflow's ``transformers`` flavor
    (``"text-classification"``, ...); None: told by the model's class."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task is not None and not self.task:
            raise ValueError("task must be a pipeline task name or None, not ''")


@dataclass(frozen=True)
class Options:
    """What a callback logs; None means: as ``autolog()`` (or its defaults) says.

    Args:
        log_every_n_steps: keep only the first training log (loss, learning rate, grad
            norm) at or past each multiple of N optimizer steps (default: every one the
            Trainer logs, as its ``logging_steps`` says); evaluations are always kept.
        log_models: the final model (and, with ``log_checkpoints``, the checkpoints).
        log_checkpoints: each checkpoint folder the Trainer saves.
        log_datasets: fingerprints of the training and evaluation datasets.
        task: the pipeline task of the model saved with MLflow's ``transformers``
            flavor (default: told by the model's class).
    """

    log_every_n_steps: int | None = None
    log_models: bool | None = None
    log_checkpoints: bool | None = None
    log_datasets: bool | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.log_every_n_steps is not None and self.log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be at least 1, not {self.log_every_n_steps}")

    def given(self) -> dict[str, Any]:
        """The options that were set (plain values: a checkpoint keeps them as JSON)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def settings(self) -> TransformersOptions:
        """The options a training follows: autolog's, with these on top."""
        return replace(settings_for(FRAMEWORK, TransformersOptions), **self.given())
