"""The machinery behind MlhooksCallback, MlhooksLogger and autolog: one Tracker per
Trainer, so that any combination of them logs each point once.

The callback drives a tracker through Lightning's hooks; the logger through Lightning's
logging path. When a Trainer has both, the logger supplies the metrics (Lightning's own
schedule and values) and the callback everything else. Only global rank zero opens a
run; on other ranks a tracker only takes part in what Lightning computes collectively.
"""

from __future__ import annotations

import multiprocessing
import weakref
from typing import Any

import mlhooks
from mlhooks.plugin import FitSession

from . import compat, data, model, params
from .checkpoints import Checkpoints
from .epochs import EpochMetrics
from .options import FRAMEWORK, Options
from .steps import StepMetrics

RUN_KEY = "mlhooks"
"""Where a checkpoint keeps the mlhooks run it belongs to: ``checkpoint["mlhooks"]``."""

_trackers: weakref.WeakKeyDictionary[Any, Tracker] = weakref.WeakKeyDictionary()


def tracker_for(trainer: Any, options: Options) -> Tracker:
    """The tracker of ``trainer``, created with ``options`` if it has none yet."""
    tracker = _trackers.get(trainer)
    if tracker is None:
        tracker = _trackers[trainer] = Tracker(trainer, options)
    return tracker


class FitFailed(RuntimeError):
    """Lightning told the logger the fit failed, without the exception."""


class Tracker:
    """Turns one Trainer's calls into fit sessions (see the module docstring): opens,
    continues and ends the session of each call, and hands what happens to its parts
    (step metrics, epoch and evaluation metrics, checkpoints, datasets)."""

    def __init__(self, trainer: Any, options: Options) -> None:
        self._trainer = weakref.ref(trainer)
        self.options = options
        self.session: FitSession | None = None
        self.stage: str | None = None
        self.logger: Any = None
        self._next_epoch = 0
        """The first epoch whose end listeners have not heard of yet."""
        """An MlhooksLogger of this trainer: the source of metrics when set."""
        self.driven_by_callback = False
        self.resume_run_id: str | None = None
        self.continuing = False
        """True while logging into a run an earlier call opened (no params then: a run
        keeps one value per param, and a resumed fit often changes max_epochs)."""
        self._last_run_id: str | None = None
        self.steps = StepMetrics()
        self.epochs = EpochMetrics()
        self.checkpoints = Checkpoints(enabled=options.log_checkpoints)
        self.datasets = data.Datasets()

    @property
    def trainer(self) -> Any:
        return self._trainer()

    @property
    def run_id(self) -> str | None:
        """The mlhooks run of the current (or last) call."""
        return self._last_run_id

    def link_logger(self, logger: Any) -> None:
        self.logger = logger
        logger._tracker = self

    # -- lifecycle ------------------------------------------------------------------------

    def begin(self, trainer: Any, stage: str) -> None:
        """Open (or continue) the run of a ``fit``, ``validate`` or ``test`` call."""
        if self.session is not None:
            return
        self.stage = stage
        self.steps.reset()
        self.epochs.reset()
        self._next_epoch = int(trainer.current_epoch)  # a resumed fit starts later
        self.datasets.reset()
        if not trainer.is_global_zero:
            return
        module = trainer.lightning_module
        resumed = self.resume_run_id if stage == "fit" else None
        continuing = resumed or (self._last_run_id if stage != "fit" else None)
        self.resume_run_id = None
        self.continuing = continuing is not None
        session = FitSession(
            FRAMEWORK,
            type(module).__name__,
            model=module,
            params=None if continuing else params.of_call(trainer, module, stage),
            tags={"mlhooks.lightning.stage": stage},
            settings=self.options.settings(),
            run_id=continuing,
        )
        session.start()
        if not session.active:
            return
        assert session.fit is not None
        self.session = session
        self._last_run_id = session.fit.run.run_id
        if resumed:
            session.set_tags({"mlhooks.lightning.resumed": "true"})
        settings = session.settings
        every = self.options.log_every_n_steps or settings.log_every_n_steps
        fitting = stage == "fit"
        self.steps.start(
            every if every is not None else trainer.log_every_n_steps,
            trainer.global_step,
            trainer.optimizers if fitting else [],
        )
        self.checkpoints.watch(list(trainer.checkpoint_callbacks) if fitting else [])
        if fitting and not continuing:
            model.log_summary(session, module)
        if fitting:
            session.expect_model("pytorch", model.framework_modules(module))

    def finish(self, trainer: Any, error: BaseException | None = None) -> None:
        """Report what is left and end the call's session (the run, if ours)."""
        session = self.session
        if session is None:
            return
        try:
            self.flush_step(trainer)
            self.poll_checkpoints(trainer)
            if self.epochs.held:
                self.epochs.log_held(session, self._epoch_step(trainer))
            if error is None and self.stage == "fit":
                self._report_quiet_epochs(trainer, upto=int(trainer.current_epoch))
            if self.logger is not None and not self.driven_by_callback:
                self.log_datasets(trainer, self.stage or "fit")
            if error is None and self.stage == "fit":
                model.log_fit_results(trainer, session, self.options.model)
        finally:
            self.session = None
            session.end(error)
            if _spawned_worker(trainer):
                mlhooks.flush(60)  # its process ends right after the fit

    # -- metrics from the callback ----------------------------------------------------------

    def batch_start(self, trainer: Any) -> None:
        """A training batch starts: store the previous one's values if due, look for
        new checkpoints, and note the learning rates this batch's step will use when
        that step is due for logging (see :mod:`.steps`).

        The previous batch's values are read now rather than at its end, so that every
        hook of that batch had its chance to log; one hook per batch is also cheaper
        for Lightning to call than two."""
        session = self.session
        if session is None:
            return
        self.steps.batch_start(trainer, session, self.logger is not None)
        self.checkpoints.poll(trainer, session)

    def flush_step(self, trainer: Any) -> None:
        """Log the step-level values of the last training batch, if due (the logger,
        when there is one, gets them from Lightning instead)."""
        if self.session is not None:
            self.steps.flush(trainer, self.session, self.logger is not None)

    def train_epoch_end(self, trainer: Any) -> None:
        """Called on every rank: epoch values may be reduced across processes."""
        if self.logger is not None or trainer.sanity_checking:
            return
        if self.session is not None:
            self.flush_step(trainer)
        values = compat.train_epoch_values(trainer)
        if self.session is not None:
            self._epoch_end(trainer, values)

    def eval_batch_end(self, trainer: Any, stage: str) -> None:
        if self.session is None or self.logger is not None or trainer.sanity_checking:
            return
        values = compat.eval_values(trainer, on_step=True)
        if values:
            self.epochs.eval_step(self.session, stage, values)

    def eval_end(self, trainer: Any, stage: str) -> None:
        """Validation or test ended (every rank)."""
        if trainer.sanity_checking:
            return
        if self.logger is None:
            values = compat.eval_values(trainer, on_step=False)
            if self.session is not None:
                in_fit = self.stage == "fit"
                if in_fit and compat.last_batch_of_epoch(trainer):
                    self.epochs.hold(values)  # goes out with the epoch's train values
                else:
                    self.session.log_metrics(values, step=self._epoch_step(trainer))
        if self.session is not None:
            self.log_datasets(trainer, "val" if stage == "validate" else stage)

    # -- metrics from the logger ------------------------------------------------------------

    def logger_metrics(self, metrics: dict[str, Any], step: int | None) -> None:
        """What Lightning sent its loggers, stored with the callback's conventions."""
        session, trainer = self.session, self.trainer
        if session is None or trainer is None or trainer.sanity_checking:
            return
        values = compat.floats(metrics)
        values.pop("epoch", None)  # Lightning adds the epoch number
        epoch_level = compat.at_epoch_end(trainer)
        if trainer.training:
            self._report_quiet_epochs(trainer, upto=int(trainer.current_epoch))
            if epoch_level:
                self._epoch_end(trainer, values)
            else:
                values.update(self.steps.learning_rates())
                session.log_metrics(values, step=trainer.global_step)
        elif epoch_level:
            session.log_metrics(values, step=self._epoch_step(trainer))
        else:
            self.epochs.eval_step(session, "test" if trainer.testing else "validate", values)

    # -- shared -------------------------------------------------------------------------------

    def _epoch_step(self, trainer: Any) -> int:
        if self.options.epoch_step == "global_step":
            return int(trainer.global_step)
        return int(trainer.current_epoch)

    def _epoch_end(self, trainer: Any, values: dict[str, float]) -> None:
        assert self.session is not None
        epoch_step = self._epoch_step(trainer)
        self.epochs.epoch_end(self.session, trainer.current_epoch, values, epoch_step)
        self._next_epoch = int(trainer.current_epoch) + 1

    def _report_quiet_epochs(self, trainer: Any, upto: int) -> None:
        """Epochs before ``upto`` that ended without epoch-level values still reach
        listeners as ``on_epoch_end`` (with no values): through a logger, Lightning only
        reports an epoch's end when the model logs something ``on_epoch``."""
        session = self.session
        if session is None or self.logger is None:
            return
        for epoch in range(self._next_epoch, upto):
            step = epoch if self.options.epoch_step == "epoch" else int(trainer.global_step)
            self.epochs.epoch_end(session, epoch, {}, step)
        self._next_epoch = max(self._next_epoch, upto)

    # -- datasets and checkpoints ---------------------------------------------------------

    def log_datasets(self, trainer: Any, stage: str) -> None:
        """Fingerprints of the datasets of ``stage`` (train, val or test), once per call."""
        if self.session is not None:
            self.datasets.log(self.session, trainer, stage)

    def poll_checkpoints(self, trainer: Any) -> None:
        """Report checkpoints saved since the last look (cheap when there are none)."""
        if self.session is not None:
            self.checkpoints.poll(trainer, self.session)

    def checkpoint_saved(self, trainer: Any, checkpointer: Any) -> None:
        """Report the files of ``checkpointer`` not reported yet."""
        if self.session is not None:
            self.checkpoints.saved(trainer, checkpointer, self.session)

    def save_state(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being saved: keep its epoch and step (the file is reported at
        the next hook) and write our run id into it."""
        self.checkpoints.saving(checkpoint)
        if self.session is not None and self._last_run_id is not None:
            checkpoint[RUN_KEY] = {"run_id": self._last_run_id}

    def load_state(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RUN_KEY)
        if isinstance(state, dict) and isinstance(state.get("run_id"), str):
            self.resume_run_id = state["run_id"]


def _spawned_worker(trainer: Any) -> bool:
    """Whether this process is a worker that ``ddp_spawn`` started for the fit."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return (
        type(launcher).__name__ == "_MultiProcessingLauncher"
        and multiprocessing.parent_process() is not None
    )
