"""mlhooks-transformers: tracks Hugging Face ``Trainer.train``.

Installed, it is found through the ``mlhooks`` entry-point group; ``mlhooks.autolog()``
patches the Trainer when ``transformers.trainer`` is imported. ``MlhooksCallback`` (a
``TrainerCallback``) tracks a Trainer without ``autolog()``. Nothing here imports
Transformers until then.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import Options, TransformersOptions

__all__ = ["MlhooksCallback", "Options", "TransformersOptions"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "MlhooksCallback":  # imports Transformers
        return importlib.import_module(f"{__name__}.callback").MlhooksCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
