"""MlhooksCallback and MlhooksLogger for ``lightning.pytorch``."""

from __future__ import annotations

from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger

from . import compat
from .callback import CallbackMixin
from .logger import LoggerMixin


class MlhooksCallback(CallbackMixin, Callback):
    __doc__ = CallbackMixin.__doc__
    _lightning_callback = Callback
    _skippable_hooks = compat.skippable_hooks("lightning.pytorch")


class MlhooksLogger(LoggerMixin, Logger):
    __doc__ = LoggerMixin.__doc__


__all__ = ["MlhooksCallback", "MlhooksLogger"]
