"""MLflow backend for mlhooks."""

from .backend import RUN_ID_TAG, MlflowBackend
from .location import TrackingUriError, resolve_tracking_uri

__all__ = ["RUN_ID_TAG", "MlflowBackend", "TrackingUriError", "resolve_tracking_uri"]
