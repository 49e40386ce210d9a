"""One ``Trainer.train`` call, from ``on_train_begin`` to its end: the fit session
(opened, or continuing the run of the checkpoint training resumes from), and what the
callback hands it (logs, epochs, checkpoints, datasets, the final model)."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession, notice_once

from . import data, model, params
from .options import FRAMEWORK, TransformersOptions

RESUMED_TAG = "mlhooks.transformers.resumed_at_step"


def numbers_of(logs: Any) -> dict[str, float]:
    """The numeric entries of a Trainer's logs (ints, floats, one-element tensors)."""
    values: dict[str, float] = {}
    for key, value in logs.items():
        if type(value) is float:
            values[key] = value
        elif isinstance(value, bool):
            continue
        elif isinstance(value, numbers.Real):
            values[key] = float(value)
        elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            values[key] = float(value.item())
    return values


class Tracker:
    """The tracking of one training; ``session`` None on processes other than the
    global rank zero, where nothing is logged."""

    def __init__(self, session: FitSession | None, options: TransformersOptions) -> None:
        self.session = session
        self.options = options
        self.every = options.log_every_n_steps
        self._last_seen = 0
        """The step of the last training log (``log_every_n_steps``)."""
        self._epoch = 0
        self.datasets = data.Datasets()

    @classmethod
    def begin(
        cls, args: Any, state: Any, trainer_model: Any, options: TransformersOptions,
        resume_run_id: str | None,
    ) -> Tracker:  # fmt: skip
        """Open the training's session (on global rank zero only): a new run, or, when
        training resumes from a checkpoint that names one, that run."""
        if not state.is_world_process_zero:
            return cls(None, options)
        resumed = resume_run_id if state.global_step > 0 else None
        arguments = params.training_arguments(args)
        config = params.model_config(trainer_model)
        session = FitSession(
            FRAMEWORK,
            getattr(args, "run_name", None) or type(trainer_model).__name__,
            model=trainer_model,
            params=None if resumed else params.of_training(arguments, config, trainer_model),
            tags={"mlhooks.transformers.model": type(trainer_model).__name__},
            settings=options,
            run_id=resumed,
        )
        session.start()
        if not session.active:
            return cls(None, options)
        tracker = cls(session, options)
        tracker._epoch = int(state.epoch or 0)
        tracker._last_seen = state.global_step
        if resumed:
            session.set_tags({RESUMED_TAG: state.global_step})
        else:
            params.log_files(session, arguments, config)
        return tracker

    @property
    def run_id(self) -> str | None:
        fit = self.session.fit if self.session is not None else None
        return fit.run.run_id if fit is not None else None

    # -- during training ------------------------------------------------------------------

    def log(self, state: Any, logs: Any) -> None:
        """What the Trainer logs (a training step's loss, learning rate and grad norm;
        an evaluation's metrics; the final figures), at the optimizer step it was at."""
        session = self.session
        if session is None or not logs:
            return
        step = state.global_step
        every = self.every
        if every and "loss" in logs:  # a training step's log: the first past each N-th step
            last, self._last_seen = self._last_seen, step
            if step // every == last // every:
                return
        session.log_metrics(numbers_of(logs), step=step)

    def epoch_begin(self, state: Any) -> None:
        self._epoch = int(state.epoch or 0)

    def epoch_end(self, state: Any) -> None:
        """The epoch ended (its values come with the logs): listeners hear of it."""
        if self.session is not None:
            self.session.epoch_end(self._epoch, {}, step=state.global_step)

    def train_data(self, loader: Any) -> None:
        if self.session is not None:
            self.datasets.log(self.session, loader, "train")

    def eval_data(self, loader: Any) -> None:
        if self.session is not None:
            self.datasets.log(self.session, loader, "eval")

    def checkpoint(self, args: Any, state: Any) -> None:
        """The checkpoint the Trainer has just saved, copied now (a later one may
        delete it, ``save_total_limit``), as ``checkpoints/checkpoint-<step>``."""
        session = self.session
        if session is None or not (self.options.log_checkpoints and self.options.log_models):
            return
        folder = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        if not folder.is_dir():  # a hyper-parameter search trial's folder, say
            notice_once(
                f"transformers-checkpoint:{args.output_dir}",
                f"mlhooks: no checkpoint folder at {folder}; checkpoints saved elsewhere "
                "are not logged",
            )
            return
        session.log_artifact(str(folder), f"checkpoints/{folder.name}")

    # -- the end ------------------------------------------------------------------------

    def finish(self, args: Any, state: Any, trainer_model: Any, processing_class: Any) -> None:
        """Training ended: the best checkpoint, the final model, the run's end."""
        session, self.session = self.session, None
        if session is None:
            return
        try:
            best = state.best_model_checkpoint
            if best:
                tags = {"mlhooks.transformers.best_checkpoint": f"checkpoints/{Path(best).name}"}
                if state.best_metric is not None:
                    tags["mlhooks.transformers.best_metric"] = repr(float(state.best_metric))
                session.set_tags(tags)
            if self.options.log_models and trainer_model is not None:
                if getattr(args, "deepspeed", None) or getattr(args, "fsdp", None):
                    notice_once(
                        "transformers-sharded-model",
                        "mlhooks: the final model of a DeepSpeed or FSDP training is not "
                        "logged (its weights are sharded across processes); save it with "
                        "trainer.save_model() and log the folder",
                    )
                else:
                    model.log_final_model(
                        session, trainer_model, processing_class, self.options.task
                    )
        finally:
            session.end()

    def end(self, error: BaseException | None) -> None:
        """Training ended otherwise (``error``: it raised): end the session as it is."""
        session, self.session = self.session, None
        if session is not None:
            session.end(error)
