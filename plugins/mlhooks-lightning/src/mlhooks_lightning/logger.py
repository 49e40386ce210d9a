"""MlhooksLogger: mlhooks as a Lightning logger, sharing the callback's Tracker.

Metrics arrive through Lightning's logging path (the Trainer's ``log_every_n_steps``).
The logger learns its Trainer when Lightning hands it the module (``log_graph``, at
the start of every ``fit``/``validate``/``test``); alone, it then drives the tracker
itself, and beside MlhooksCallback (or autolog) it only supplies the metrics.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mlhooks.plugin import report_internal_error

from .options import Options
from .params import flatten
from .tracker import FitFailed, Tracker, tracker_for


class LoggerMixin:
    """``Trainer(logger=MlhooksLogger())``: like MLFlowLogger, through mlhooks.

    Takes the options of :class:`mlhooks_lightning.options.Options` except
    ``log_every_n_steps`` (the Trainer's applies). Resuming a run from a checkpoint
    needs MlhooksCallback (or autolog): a logger cannot write into checkpoints.
    """

    def __init__(
        self,
        log_models: bool | None = None,
        log_checkpoints: bool = True,
        log_datasets: bool | None = None,
        model: str = "final",
        epoch_step: str = "epoch",
        *,
        registered_model_name: str | None = None,
    ) -> None:
        super().__init__()
        self.options = Options(
            log_models=log_models,
            log_checkpoints=log_checkpoints,
            log_datasets=log_datasets,
            model=model,
            epoch_step=epoch_step,
            registered_model_name=registered_model_name,
        )
        self._tracker: Tracker | None = None
        self._params: dict[str, Any] = {}
        self._version = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None
        return state

    # -- what Lightning asks of a logger --------------------------------------------------

    @property
    def name(self) -> str:
        return "mlhooks"

    @property
    def version(self) -> str:
        return self._version

    @property
    def save_dir(self) -> str | None:
        return None

    @property
    def experiment(self) -> Any:
        """The mlhooks run id of the current (or last) call, or None."""
        return self._tracker.run_id if self._tracker is not None else None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        try:
            if hasattr(params, "__dict__") and not isinstance(params, dict):
                params = vars(params)  # an argparse Namespace
            values = dict(flatten(dict(params)))
            self._params.update(values)
            self._flush_params()
        except Exception as error:  # noqa: BLE001
            report_internal_error("lightning logger log_hyperparams", error)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        try:
            trainer = getattr(model, "_trainer", None)
            if trainer is None:
                return
            tracker = tracker_for(trainer, self.options)
            tracker.link_logger(self)
            if not tracker.driven_by_callback:
                stage = str(getattr(trainer.state.fn, "value", trainer.state.fn) or "fit")
                tracker.begin(trainer, stage)
            self._flush_params()
        except Exception as error:  # noqa: BLE001
            report_internal_error("lightning logger log_graph", error)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        tracker = self._tracker
        if tracker is None:
            return
        try:
            tracker.logger_metrics(metrics, step)
        except Exception as error:  # noqa: BLE001
            report_internal_error("lightning logger log_metrics", error)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.trainer is None:
            return
        try:
            tracker.checkpoint_saved(tracker.trainer, checkpoint_callback)
        except Exception as error:  # noqa: BLE001
            report_internal_error("lightning logger after_save_checkpoint", error)

    def finalize(self, status: str) -> None:
        tracker = self._tracker
        if tracker is None or tracker.driven_by_callback or tracker.trainer is None:
            return
        try:
            error = None if status == "success" else FitFailed(f"Lightning: {status}")
            tracker.finish(tracker.trainer, error)
        except Exception as error:  # noqa: BLE001
            report_internal_error("lightning logger finalize", error)

    def _flush_params(self) -> None:
        tracker = self._tracker
        if tracker is not None and tracker.session is not None and self._params:
            if not tracker.continuing:
                tracker.session.log_params(self._params)
            self._params = {}
