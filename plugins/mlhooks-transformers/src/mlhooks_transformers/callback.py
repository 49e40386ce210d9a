"""``MlhooksCallback``: a ``TrainerCallback`` that tracks a Trainer's trainings.

``autolog()`` adds one to a Trainer for the duration of each ``train`` call (see
:mod:`.plugin`); users may pass one themselves, ``Trainer(callbacks=[MlhooksCallback()])``.
Every hook is guarded: a failure of mlhooks' own code warns once per hook and training
goes on (``MLHOOKS_STRICT=1`` raises instead).

The callback is an ``ExportableState``: each checkpoint's ``trainer_state.json`` keeps
its options and the run it logs to, so that a training resumed from that checkpoint
continues the run, and a Trainer that restores callback states
(``restore_callback_states_from_checkpoint=True``) rebuilds it with its options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from mlhooks.plugin import report_internal_error, warn_once

from . import compat
from .options import Options
from .tracker import Tracker

F = TypeVar("F", bound=Callable[..., None])


def guarded(hook: F) -> F:
    site = f"transformers callback {hook.__name__}"

    @functools.wraps(hook)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - tracking never breaks training
            report_internal_error(site, error)

    return run  # type: ignore[return-value]


class UnfinishedTraining(RuntimeError):
    """A training this callback tracked raised before its end, which no callback hook
    tells: its run ends FAILED when the next training begins."""


class MlhooksCallback(TrainerCallback, ExportableState):
    """Tracks each ``Trainer.train`` into mlhooks (MLflow by default): the training
    arguments and the model's config as params, every log of the Trainer (loss,
    learning rate, grad norm, evaluation metrics) at its step, each checkpoint, the
    datasets' fingerprints and the final model. Only the global rank zero logs.

    Takes the options of :class:`mlhooks_transformers.options.Options`; those left as
    None follow ``autolog()``. Given to a Trainer when it is built, it leaves that
    Trainer's Hugging Face MLflow callback (``report_to="mlflow"``) out.
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        log_models: bool | None = None,
        log_checkpoints: bool | None = None,
        log_datasets: bool | None = None,
        task: str | None = None,
    ) -> None:
        self.options = Options(log_every_n_steps, log_models, log_checkpoints, log_datasets, task)
        self.run_id: str | None = None
        """The mlhooks run of the current (or last) training; kept in checkpoints."""
        self._tracker: Tracker | None = None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (``ExportableState``)."""
        return {"args": self.options.given(), "attributes": {"run_id": self.run_id}}

    # -- the Trainer is built ---------------------------------------------------------------

    @guarded
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Leave the Trainer's Hugging Face MLflow callback out: it would log the same
        training a second time. (The handler calling this keeps iterating its old list.)"""
        handler = compat.handler_calling(self)
        if handler is not None:
            handler.callbacks = compat.without_hf_mlflow(handler.callbacks)

    # -- a training -------------------------------------------------------------------------

    @guarded
    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None,
        train_dataloader: Any = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        resume = self._stored_run_id(state)
        self._keep_state_entry(state)
        if self._tracker is not None:  # the last training raised: nothing told us
            self._tracker.end(UnfinishedTraining("the training did not reach its end"))
        self._warn_if_mlflow_logs_too(state)
        self._tracker = tracker = Tracker.begin(args, state, model, self.options.settings(), resume)
        if tracker.session is not None:
            self.run_id = tracker.run_id
            tracker.train_data(train_dataloader)

    @guarded
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._tracker is not None:
            self._tracker.epoch_begin(state)

    @guarded
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._tracker is not None:
            self._tracker.epoch_end(state)

    @guarded
    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self._tracker is not None:
            self._tracker.log(state, logs)

    @guarded
    def on_evaluate(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
    ) -> None:
        if self._tracker is not None:
            self._tracker.eval_data(eval_dataloader)

    @guarded
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._tracker is not None:
            self._tracker.checkpoint(args, state)

    @guarded
    def on_train_end(
        self, args: Any, state: Any, control: Any, model: Any = None,
        processing_class: Any = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.finish(args, state, model, processing_class)

    # -- what autolog's patch of Trainer.train tells ----------------------------------------

    def training_ended(self, error: BaseException | None) -> None:
        """``train`` returned (``error`` None) or raised ``error``: end a session that
        is still open (after a failure of ours in ``on_train_end``, or the training's
        own exception)."""
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.end(error)

    # -- helpers ----------------------------------------------------------------------------

    def _keep_state_entry(self, state: Any) -> None:
        """A training resumed from a checkpoint made without mlhooks has no entry of
        ours among the checkpoint's callback states, where the Trainer writes ours at
        its next save (a KeyError otherwise): give it one."""
        stored = getattr(state, "stateful_callbacks", None)
        if isinstance(stored, dict):
            stored.setdefault(type(self).__name__, self.state())

    def _stored_run_id(self, state: Any) -> str | None:
        """The run named by the callback states the training started from."""
        entry = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        entries = entry if isinstance(entry, list) else [entry]
        for item in entries:
            attributes = item.get("attributes") if isinstance(item, dict) else None
            run_id = attributes.get("run_id") if isinstance(attributes, dict) else None
            if isinstance(run_id, str):
                return run_id
        return None

    def _warn_if_mlflow_logs_too(self, state: Any) -> None:
        handler = compat.handler_calling(self)
        if handler is None or not state.is_world_process_zero:
            return
        if len(compat.without_hf_mlflow(handler.callbacks)) != len(handler.callbacks):
            warn_once(
                "transformers-mlflow-callback",
                "mlhooks: this Trainer also reports to MLflow itself (report_to='mlflow'), "
                "so the training is logged twice; give MlhooksCallback to the Trainer "
                "when building it, use mlhooks.autolog(), or leave 'mlflow' out of report_to",
            )
