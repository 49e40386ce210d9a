"""The entry point: the Lightning integration for ``autolog()``.

``Trainer.fit``, ``validate`` and ``test`` (of ``lightning.pytorch`` and of
``pytorch_lightning``, whichever is imported) are patched to add an MlhooksCallback for
the duration of the call when the Trainer has none, so that an explicit callback and
``autolog()`` never track anything twice.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType
from typing import Any

import mlhooks
from mlhooks.plugin import Call, CallHandler, Integration

from .callback import CallbackMixin
from .options import FRAMEWORK, LightningOptions, Options

_CLASSES = {"lightning.pytorch": "for_lightning", "pytorch_lightning": "for_pytorch_lightning"}


class AddCallback(CallHandler):
    """Around a Trainer call: add our callback to a new list, put the old one back."""

    def __init__(self, classes_module: str) -> None:
        self.classes_module = classes_module

    def before(self, call: Call) -> None:
        trainer = call.instance
        callbacks = trainer.callbacks
        if any(isinstance(callback, CallbackMixin) for callback in callbacks):
            return  # the user's own: it tracks this call
        module = importlib.import_module(f"{__package__}.{self.classes_module}")
        added = module.MlhooksCallback(options=Options.from_autolog())
        call.state["restore"] = (callbacks, added)
        trainer.callbacks = [*callbacks, added]

    def after(self, call: Call, result: Any) -> None:
        self._restore(call)

    def failed(self, call: Call, error: BaseException) -> None:
        self._restore(call)

    def _restore(self, call: Call) -> None:
        saved = call.state.pop("restore", None)
        if saved is None:
            return
        callbacks, added = saved
        trainer = call.instance
        remaining = [callback for callback in trainer.callbacks if callback is not added]
        unchanged = len(remaining) == len(callbacks) and all(
            a is b for a, b in zip(remaining, callbacks, strict=False)
        )
        trainer.callbacks = callbacks if unchanged else remaining


class LightningIntegration(Integration):
    name = FRAMEWORK
    modules = ("lightning.pytorch", "pytorch_lightning")
    min_version = "2.0"
    max_version = "3.0"
    options = LightningOptions

    def patch(self, module: ModuleType) -> None:
        handler = AddCallback(_CLASSES[module.__name__])
        for attribute in ("fit", "validate", "test"):
            self.wrap(module.Trainer, attribute, handler)

    def installed_version(self) -> str | None:
        for distribution in ("lightning", "pytorch_lightning"):
            try:
                return importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None


integration = LightningIntegration()


@mlhooks.hookimpl
def register_integrations(register: Any) -> None:
    register(integration)
