"""MlhooksCallback's hooks: each one hands over to the trainer's Tracker.

Every hook is guarded: a failure of mlhooks' own code warns once per hook and training
goes on (``MLHOOKS_STRICT=1`` raises instead).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from mlhooks.plugin import report_internal_error

from .options import Options
from .tracker import Tracker, tracker_for

F = TypeVar("F", bound=Callable[..., None])


def guarded(hook: F) -> F:
    site = f"lightning callback {hook.__name__}"

    @functools.wraps(hook)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - tracking never breaks training
            report_internal_error(site, error)

    return run  # type: ignore[return-value]


class CallbackMixin:
    """Tracks a Trainer's ``fit``, ``validate`` and ``test`` into mlhooks (MLflow by
    default): metrics logged with ``self.log``, learning rates, hyper-parameters and
    settings, checkpoints, dataset fingerprints and the final model.

    ``Trainer(callbacks=[MlhooksCallback(log_every_n_steps=50)])``. Takes the options of
    :class:`mlhooks_lightning.options.Options`; those left as None follow ``autolog()``.
    ``MlhooksCallback(registered_model_name="forecaster")`` registers each fit's model.
    """

    _lightning_callback: type = object
    """Lightning's ``Callback`` (set by the concrete classes)."""
    _skippable_hooks: tuple[str, ...] = ()
    """Hooks an instance may set to None, when it inherits them as no-ops."""

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        log_models: bool | None = None,
        log_checkpoints: bool = True,
        log_datasets: bool | None = None,
        model: str = "final",
        epoch_step: str = "epoch",
        *,
        registered_model_name: str | None = None,
        options: Options | None = None,
    ) -> None:
        super().__init__()
        self.options = options or Options(
            log_every_n_steps=log_every_n_steps,
            log_models=log_models,
            log_checkpoints=log_checkpoints,
            log_datasets=log_datasets,
            model=model,
            epoch_step=epoch_step,
            registered_model_name=registered_model_name,
        )
        self._tracker: Tracker | None = None
        for name in self._skippable_hooks:
            if getattr(type(self), name) is getattr(self._lightning_callback, name):
                setattr(self, name, None)  # Lightning skips it (compat.skippable_hooks)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None  # a spawned worker makes its own
        return state

    def _of(self, trainer: Any) -> Tracker:
        tracker = self._tracker
        if tracker is None or tracker.trainer is not trainer:
            tracker = self._tracker = tracker_for(trainer, self.options)
            tracker.driven_by_callback = True
        return tracker

    # -- lifecycle ------------------------------------------------------------------------

    @guarded
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        tracker = self._of(trainer)
        from .logger import LoggerMixin

        for logger in trainer.loggers:
            if isinstance(logger, LoggerMixin):
                tracker.link_logger(logger)

    @guarded
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._of(trainer).begin(trainer, "fit")

    @guarded
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._of(trainer).log_datasets(trainer, "train")

    @guarded
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        tracker = self._of(trainer)
        if tracker.stage == "fit" and tracker.session is not None:
            tracker.flush_step(trainer)
            tracker.poll_checkpoints(trainer)
        else:
            tracker.begin(trainer, "validate")

    @guarded
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._of(trainer).begin(trainer, "test")

    @guarded
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._of(trainer).finish(trainer)

    @guarded
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._of(trainer).finish(trainer, exception)

    # -- training -------------------------------------------------------------------------

    @guarded
    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._of(trainer).batch_start(trainer)

    @guarded
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._of(trainer).poll_checkpoints(trainer)

    @guarded
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        tracker = self._of(trainer)
        tracker.train_epoch_end(trainer)
        tracker.poll_checkpoints(trainer)

    @guarded
    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        tracker = self._of(trainer)
        tracker.flush_step(trainer)
        tracker.poll_checkpoints(trainer)

    # -- evaluation -----------------------------------------------------------------------

    @guarded
    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._of(trainer).eval_batch_end(trainer, "validate")

    @guarded
    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._of(trainer).eval_batch_end(trainer, "test")

    @guarded
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        tracker = self._of(trainer)
        tracker.eval_end(trainer, "validate")
        tracker.poll_checkpoints(trainer)

    @guarded
    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._of(trainer).eval_end(trainer, "test")

    # -- resuming -------------------------------------------------------------------------

    @guarded
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._of(trainer).save_state(checkpoint)

    @guarded
    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._of(trainer).load_state(checkpoint)
