"""The machinery behind MlhooksCallback, MlhooksLogger and autolog: one Tracker per
Trainer, so that any combination of them logs each point once.

The callback drives a tracker through Lightning's hooks; the logger through Lightning's
logging path. When a Trainer has both, the logger supplies the metrics (Lightning's own
schedule and values) and the callback everything else. Only global rank zero opens a
run; on other ranks a tracker only takes part in what Lightning computes collectively.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import weakref
from pathlib import Path
from typing import Any

import mlhooks
from mlhooks.plugin import FitSession, ModelArtifact

from . import compat, data, params
from .options import FRAMEWORK, Options

CHECKPOINT_FLAVOR = "lightning_checkpoint"
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
    """Turns one Trainer's calls into fit sessions (see the module docstring)."""

    def __init__(self, trainer: Any, options: Options) -> None:
        self._trainer = weakref.ref(trainer)
        self.options = options
        self.session: FitSession | None = None
        self.stage: str | None = None
        self.logger: Any = None
        """An MlhooksLogger of this trainer: the source of metrics when set."""
        self.driven_by_callback = False
        self.resume_run_id: str | None = None
        self.continuing = False
        """True while logging into a run an earlier call opened (no params then: a run
        keeps one value per param, and a resumed fit often changes max_epochs)."""
        self._last_run_id: str | None = None
        self._every = 0
        self._last_step = 0
        self._batch_ran = False
        """A training batch started and its step-level values are not logged yet."""
        self._rates: dict[str, float] | None = None
        self._val_stash: dict[str, float] = {}
        self._eval_steps: dict[str, int] = {}
        self._checkpointers: list[Any] = []
        self._signatures: dict[int, tuple[Any, ...]] = {}
        self._reported: set[tuple[str, int, int]] = set()
        self._saved_at: tuple[Any, Any] | None = None
        self._lr_names: list[tuple[Any, list[str]]] = []
        self._datasets_logged: set[str] = set()

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
        self._batch_ran = False
        self._rates = None
        self._val_stash = {}
        self._datasets_logged = set()
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
            params=None if continuing else self._params(trainer, module, stage),
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
        self._every = every if every is not None else trainer.log_every_n_steps
        self._last_step = trainer.global_step
        self._lr_names = _lr_names(trainer.optimizers) if stage == "fit" else []
        self._checkpointers = list(trainer.checkpoint_callbacks) if stage == "fit" else []
        for checkpointer in self._checkpointers:  # what is there already is not new
            self._signatures[id(checkpointer)] = _signature(checkpointer)
            for path in _paths(checkpointer):
                if os.path.exists(path):
                    self._reported.add(_file_key(path))
        if stage == "fit" and not continuing:
            self._log_summary(module)

    def finish(self, trainer: Any, error: BaseException | None = None) -> None:
        """Report what is left and end the call's session (the run, if ours)."""
        session = self.session
        if session is None:
            return
        try:
            self.flush_step(trainer)
            self.poll_checkpoints(trainer)
            if self._val_stash:
                session.log_metrics(self._val_stash, step=self._epoch_step(trainer))
                self._val_stash = {}
            if self.logger is not None and not self.driven_by_callback:
                self.log_datasets(trainer, self.stage or "fit")
            if error is None and self.stage == "fit":
                self._log_fit_results(trainer, session)
        finally:
            self.session = None
            session.end(error)
            if _spawned_worker(trainer):
                mlhooks.flush(60)  # its process ends right after the fit

    # -- metrics from the callback ----------------------------------------------------------

    def batch_start(self, trainer: Any) -> None:
        """A training batch starts: store the previous one's values if due, look for
        new checkpoints, and note the learning rates this batch's step will use when
        that step is due for logging.

        The previous batch's values are read now rather than at its end, so that every
        hook of that batch had its chance to log; one hook per batch is also cheaper
        for Lightning to call than two."""
        if self.session is None:
            return
        self.flush_step(trainer)
        self.poll_checkpoints(trainer)
        every = self._every
        step = self._last_step = trainer.global_step  # (restored only after on_fit_start)
        self._batch_ran = True
        if every and (step + 1) // every != step // every:
            self._rates = self._learning_rates()

    def flush_step(self, trainer: Any) -> None:
        """Log the step-level values of the last training batch, with the learning
        rates, when the optimizer steps it took crossed a multiple of the logging
        interval (the logger, when there is one, gets them from Lightning instead)."""
        if not self._batch_ran or self.session is None:
            return
        self._batch_ran = False
        step, every = trainer.global_step, self._every
        if self.logger is not None or not every or step // every == self._last_step // every:
            return
        values = compat.train_step_values(trainer)
        values.update(self._rates or self._learning_rates())
        self._rates = None
        self.session.log_metrics(values, step=step)

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
            self._eval_step(stage, values)

    def eval_end(self, trainer: Any, stage: str) -> None:
        """Validation or test ended (every rank)."""
        if trainer.sanity_checking:
            return
        if self.logger is None:
            values = compat.eval_values(trainer, on_step=False)
            if self.session is not None:
                in_fit = self.stage == "fit"
                if in_fit and compat.last_batch_of_epoch(trainer):
                    self._val_stash.update(values)  # goes out with the epoch's train values
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
            if epoch_level:
                self._epoch_end(trainer, values)
            else:
                values.update(self._learning_rates())
                session.log_metrics(values, step=trainer.global_step)
        elif epoch_level:
            session.log_metrics(values, step=self._epoch_step(trainer))
        else:
            self._eval_step("test" if trainer.testing else "validate", values)

    # -- shared -------------------------------------------------------------------------------

    def _epoch_step(self, trainer: Any) -> int:
        if self.options.epoch_step == "global_step":
            return int(trainer.global_step)
        return int(trainer.current_epoch)

    def _epoch_end(self, trainer: Any, values: dict[str, float]) -> None:
        assert self.session is not None
        merged = {**self._val_stash, **values}
        self._val_stash = {}
        self.session.epoch_end(trainer.current_epoch, merged, step=self._epoch_step(trainer))

    def _eval_step(self, stage: str, values: dict[str, float]) -> None:
        """Step-level evaluation values: at a count of evaluation batches of this stage
        that keeps growing across validations, so that no step repeats."""
        assert self.session is not None
        step = self._eval_steps.get(stage, 0)
        self._eval_steps[stage] = step + 1
        self.session.log_metrics(values, step=step)

    def _learning_rates(self) -> dict[str, float]:
        rates: dict[str, float] = {}
        for optimizer, names in self._lr_names:
            for name, group in zip(names, optimizer.param_groups, strict=False):
                rates[name] = float(group["lr"])
        return rates

    # -- params, datasets, models --------------------------------------------------------

    def _params(self, trainer: Any, module: Any, stage: str) -> dict[str, Any]:
        values = params.hyperparameters(trainer, module)
        values.update(params.parameter_counts(module))
        if stage == "fit":
            values.update(params.trainer_settings(trainer))
            values.update(params.optimizers(trainer))
            values.update(params.early_stopping_settings(trainer))
        return values

    def _log_summary(self, module: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="mlhooks-lightning-") as folder:
            path = Path(folder) / "model_summary.txt"
            path.write_text(params.summary(module))
            mlhooks.log_artifact(path)  # copied now; the folder may go

    def log_datasets(self, trainer: Any, stage: str) -> None:
        """Fingerprints of the datasets of ``stage`` (train, val or test), once per call."""
        session = self.session
        if session is None or stage in self._datasets_logged or not session.settings.log_datasets:
            return
        self._datasets_logged.add(stage)
        loaders = {
            "train": lambda: trainer.train_dataloader,
            "fit": lambda: trainer.train_dataloader,
            "val": lambda: trainer.val_dataloaders,
            "test": lambda: trainer.test_dataloaders,
        }[stage]()
        found = data.datasets_of(loaders)
        name = "train" if stage == "fit" else stage
        for index, dataset in enumerate(found):
            label = name if len(found) == 1 else f"{name}_{index}"
            context = "train" if name == "train" else "eval"
            info = data.fingerprint(dataset, label, context)
            if info is not None:
                session.log_dataset(info)

    def _log_fit_results(self, trainer: Any, session: FitSession) -> None:
        stopper = getattr(trainer, "early_stopping_callback", None)
        if stopper is not None:
            values = {
                "early_stopping.stopped_epoch": stopper.stopped_epoch,
                "early_stopping.wait_count": stopper.wait_count,
            }
            best = compat._to_float(stopper.best_score)
            if best is not None and abs(best) != float("inf"):
                values["early_stopping.best_score"] = best
            session.log_metrics(values, step=trainer.global_step)
        checkpointer = trainer.checkpoint_callback
        best_path = getattr(checkpointer, "best_model_path", "") or ""
        if best_path:
            tags = {"mlhooks.lightning.best_checkpoint": f"checkpoints/{Path(best_path).stem}"}
            score = compat._to_float(getattr(checkpointer, "best_model_score", None))
            if score is not None:
                tags["mlhooks.lightning.best_score"] = repr(score)
            session.set_tags(tags)
        if not session.settings.log_models:
            return
        module = trainer.lightning_module
        if self.options.model == "best" and best_path and os.path.exists(best_path):
            module = _with_weights_of(module, best_path)
        example = getattr(module, "example_input_array", None)
        extra: dict[str, Any] = {}
        if example is not None and hasattr(example, "numpy"):
            extra["sample_input"] = example.detach().cpu().numpy()
        session.log_model(module, name="model", flavor="pytorch", **extra)

    # -- checkpoints ------------------------------------------------------------------------

    def poll_checkpoints(self, trainer: Any) -> None:
        """Report checkpoints saved since the last look (cheap when there are none)."""
        if self.session is None or not self.options.log_checkpoints:
            return
        for checkpointer in self._checkpointers:
            signature = _signature(checkpointer)
            if self._signatures.get(id(checkpointer)) != signature:
                self._signatures[id(checkpointer)] = signature
                self.checkpoint_saved(trainer, checkpointer)

    def checkpoint_saved(self, trainer: Any, checkpointer: Any) -> None:
        """Report the files of ``checkpointer`` not reported yet: the file is copied
        now, so that ``save_top_k`` deleting it later cannot matter."""
        session = self.session
        if session is None or not self.options.log_checkpoints:
            return
        for path in _paths(checkpointer):
            try:
                key = _file_key(path)
            except OSError:
                continue  # already gone
            if key in self._reported:
                continue
            self._reported.add(key)
            score = checkpointer.best_k_models.get(path)
            epoch, step = self._saved_at or (trainer.current_epoch, trainer.global_step)
            session.model_saved(
                ModelArtifact(
                    name=f"checkpoints/{Path(path).stem}",
                    flavor=CHECKPOINT_FLAVOR,
                    path=path,
                    format="file",
                    metadata={
                        "monitor": checkpointer.monitor,
                        "score": compat._to_float(score) if score is not None else None,
                        "best": path == checkpointer.best_model_path,
                        "last": path == checkpointer.last_model_path,
                        "epoch": epoch,
                        "global_step": step,
                    },
                )
            )

    def save_state(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being saved: keep its epoch and step (the file is reported at
        the next hook) and write our run id into it."""
        self._saved_at = (checkpoint.get("epoch"), checkpoint.get("global_step"))
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


def _signature(checkpointer: Any) -> tuple[Any, ...]:
    return (
        checkpointer.last_model_path,
        checkpointer.best_model_path,
        tuple(checkpointer.best_k_models),
    )


def _paths(checkpointer: Any) -> list[str]:
    """The files a ModelCheckpoint keeps (without a monitor, only ``best_model_path``
    names the latest)."""
    paths = list(checkpointer.best_k_models)
    for path in (checkpointer.best_model_path, checkpointer.last_model_path):
        if path and path not in paths:
            paths.append(path)
    return [p for p in paths if p]


def _file_key(path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return (path, stat.st_mtime_ns, stat.st_size)


def _lr_names(optimizers: list[Any]) -> list[tuple[Any, list[str]]]:
    """``lr-<Optimizer>`` (``-<i>`` when classes repeat), ``/pg<j>`` per param group
    when there are several: LearningRateMonitor's names."""
    classes = [type(o).__name__ for o in optimizers]
    out = []
    for index, optimizer in enumerate(optimizers):
        base = f"lr-{classes[index]}"
        if classes.count(classes[index]) > 1:
            base += f"-{index}"
        groups = optimizer.param_groups
        names = [base] if len(groups) == 1 else [f"{base}/pg{j + 1}" for j in range(len(groups))]
        out.append((optimizer, names))
    return out


def _with_weights_of(module: Any, checkpoint_path: str) -> Any:
    """A copy of ``module`` holding the weights of the checkpoint."""
    import torch

    copy = pickle.loads(pickle.dumps(module))
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    copy.load_state_dict(state["state_dict"])
    return copy
