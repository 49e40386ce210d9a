"""The few places where mlhooks relies on more than the Trainer's documented callback
API, kept in one module.

* Hugging Face's own MLflow callback (``report_to="mlflow"``) is recognised by its
  exact class, ``transformers.integrations.MLflowCallback``: its subclasses (DagsHub's)
  are other loggers and are left alone.
* A callback is not given its Trainer. The handler that calls it is the ``self`` of
  ``CallbackHandler.call_event``, a few frames up: :func:`handler_calling` finds it,
  so that a callback passed as ``Trainer(callbacks=[...])`` can leave the MLflow
  callback out when the Trainer is built.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
)
"""Model class name endings -> the pipeline task MLflow's flavor saves the model for."""


def task_of(model: Any) -> str | None:
    """The pipeline task a model of this class serves, None when not one of :data:`TASKS`."""
    name = type(model).__name__
    for ending, task in TASKS:
        if name.endswith(ending):
            return task
    return None


def is_hf_mlflow_callback(callback: Any) -> bool:
    """Whether ``callback`` is Hugging Face's MLflow callback (``report_to="mlflow"``)."""
    from transformers.integrations.integration_utils import MLflowCallback

    return type(callback) is MLflowCallback


def without_hf_mlflow(callbacks: list[Any]) -> list[Any]:
    return [callback for callback in callbacks if not is_hf_mlflow_callback(callback)]


def handler_calling(callback: Any, depth: int = 8) -> Any:
    """The ``CallbackHandler`` whose event is calling ``callback`` now, or None."""
    from transformers.trainer_callback import CallbackHandler

    frame = sys._getframe(1)
    for _ in range(depth):
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler) and any(c is callback for c in owner.callbacks):
            return owner
        if frame.f_back is None:
            return None
        frame = frame.f_back
    return None


_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_on = False


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Transformers' progress bars ("Writing model shards", "Loading weights") off
    while mlhooks saves or loads a model of its own accord, then as they were."""
    from transformers.utils import logging

    hf_logging: Any = logging  # its switches are not annotated
    global _quiet_depth, _bars_were_on
    with _quiet_lock:
        if _quiet_depth == 0:
            _bars_were_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _bars_were_on:
                hf_logging.enable_progress_bar()
