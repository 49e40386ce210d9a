"""mlhooks for PyTorch Lightning: ``MlhooksCallback``, ``MlhooksLogger`` and the
integration ``mlhooks.autolog()`` patches Lightning with.

``from mlhooks_lightning import MlhooksCallback`` gives the classes for
``lightning.pytorch`` when it is installed, else for ``pytorch_lightning``; the
modules ``mlhooks_lightning.for_lightning`` and ``mlhooks_lightning.for_pytorch_lightning``
name one package explicitly.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import Options

__all__ = ["MlhooksCallback", "MlhooksLogger", "Options"]


def __getattr__(name: str) -> Any:
    if name not in ("MlhooksCallback", "MlhooksLogger"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.for_lightning")
    except ImportError:
        module = importlib.import_module(f"{__name__}.for_pytorch_lightning")
    return getattr(module, name)
