"""MlhooksCallback and MlhooksLogger for ``pytorch_lightning``."""

from __future__ import annotations

from pytorch_lightning import Callback
from pytorch_lightning.loggers import Logger

from . import compat
from .callback import CallbackMixin
from .logger import LoggerMixin


class MlhooksCallback(CallbackMixin, Callback):
    __doc__ = CallbackMixin.__doc__
    _lightning_callback = Callback
    _skippable_hooks = compat.skippable_hooks("pytorch_lightning")


class MlhooksLogger(LoggerMixin, Logger):
    __doc__ = LoggerMixin.__doc__


__all__ = ["MlhooksCallback", "MlhooksLogger"]
