"""MLflow backend for mlhooks.

The names below are imported on first use, so that importing the package (as the
pytest plugin ``mlhooks_mlflow.testing`` does in every test session) does not import
MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import RUN_ID_TAG, MlflowBackend
    from .location import TrackingUriError, resolve_tracking_uri

__all__ = ["RUN_ID_TAG", "MlflowBackend", "TrackingUriError", "resolve_tracking_uri"]

_HOMES = {
    "RUN_ID_TAG": "backend",
    "MlflowBackend": "backend",
    "TrackingUriError": "location",
    "resolve_tracking_uri": "location",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
