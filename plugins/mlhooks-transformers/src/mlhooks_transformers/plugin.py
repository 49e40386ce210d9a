"""The entry point: the Transformers integration for ``autolog()``.

``Trainer.train`` (``transformers.trainer.Trainer``, patched when that module is
imported, which ``from transformers import Trainer`` does) runs with an
:class:`~mlhooks_transformers.MlhooksCallback` added to the Trainer's callbacks when it
has none of its own, and without Hugging Face's MLflow callback (``report_to="mlflow"``),
which would log the same training a second time; both are put back as they were when
the call returns. Other ``report_to`` loggers are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import mlhooks
from mlhooks.plugin import Call, CallHandler, Integration

from . import compat
from .options import FRAMEWORK, TransformersOptions

if TYPE_CHECKING:
    from .callback import MlhooksCallback


class TrainCall(CallHandler):
    """Around ``Trainer.train``: the Trainer's callbacks with ours and without Hugging
    Face's MLflow callback, then as they were; the training's exception ends its run."""

    def __init__(self, callback_class: type[MlhooksCallback]) -> None:
        self.callback_class = callback_class

    def before(self, call: Call) -> None:
        handler = call.instance.callback_handler
        original = list(handler.callbacks)
        callbacks = compat.without_hf_mlflow(original)
        added = None
        if not any(isinstance(callback, self.callback_class) for callback in callbacks):
            added = self.callback_class()
            callbacks.append(added)
        call.state["restore"] = (handler.callbacks, original, callbacks, added)
        if len(callbacks) != len(original) or added is not None:
            handler.callbacks = callbacks

    def after(self, call: Call, result: Any) -> None:
        self._end(call, None)

    def failed(self, call: Call, error: BaseException) -> None:
        self._end(call, error)

    def _end(self, call: Call, error: BaseException | None) -> None:
        handler = call.instance.callback_handler
        try:
            for callback in list(handler.callbacks):
                if isinstance(callback, self.callback_class):
                    callback.training_ended(error)
        finally:
            self._restore(handler, call.state.pop("restore"))

    def _restore(self, handler: Any, saved: tuple[Any, ...]) -> None:
        """The callbacks as they were, unless the training changed them (a Trainer
        restoring callback states from a checkpoint replaces them): then theirs, without
        the callback we added (or what replaced it), with the MLflow callback back."""
        list_object, original, ours, added = saved
        current = handler.callbacks
        if len(current) == len(ours) and all(a is b for a, b in zip(current, ours, strict=True)):
            list_object[:] = original  # the list the Trainer had, as it was
            handler.callbacks = list_object
            return
        kept = [
            callback
            for callback in current
            if added is None
            or not isinstance(callback, self.callback_class)
            or any(callback is before for before in original)
        ]
        removed = [c for c in original if compat.is_hf_mlflow_callback(c)]
        handler.callbacks = kept + [c for c in removed if not any(c is k for k in kept)]


class TransformersIntegration(Integration):
    name = FRAMEWORK
    modules = ("transformers.trainer",)
    distribution = "transformers"
    min_version = "4.46"
    max_version = "6.0"
    options = TransformersOptions

    def patch(self, module: ModuleType) -> None:
        # Imports Transformers' callback module, which the Trainer's has just imported:
        # loaded now rather than in the first training.
        from .callback import MlhooksCallback

        self.wrap(module.Trainer, "train", TrainCall(MlhooksCallback))


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(TransformersIntegration())
