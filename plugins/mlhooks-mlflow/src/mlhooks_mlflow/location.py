"""Where MLflow data goes: the tracking URI and the experiment, resolved as MLflow does."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""MLflow 3's default store."""


class TrackingUriError(ValueError):
    """A tracking URI mlhooks cannot write to, with what to do about it."""


def _file_store_allowed() -> bool:
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true", "yes")


def _major_version() -> int:
    return int(importlib.metadata.version("mlflow").split(".")[0])


def current_tracking_uri() -> str:
    """What ``mlflow.get_tracking_uri()`` says, without importing MLflow when the user's
    program did not: then neither ``mlflow.set_tracking_uri`` nor a notebook could
    have chosen one, and MLflow's own answer is its environment variable or default."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and hasattr(mlflow, "get_tracking_uri"):
        return str(mlflow.get_tracking_uri())
    if _major_version() < 3:  # MLflow 2's default: the file store ./mlruns, as it says it
        return os.environ.get("MLFLOW_TRACKING_URI") or Path(os.path.abspath("mlruns")).as_uri()
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else ``MLFLOW_TRACKING_URI``/``mlflow.set_tracking_uri``, else
    MLflow's default (``sqlite:///mlflow.db`` in the current folder). Relative sqlite
    paths become absolute, so that a later ``mlhooks sync`` from elsewhere finds them.

    Raises TrackingUriError for a file store that MLflow 3 refuses.
    """
    uri = explicit if explicit is not None else current_tracking_uri()
    parsed = urlparse(uri)
    is_file_store = parsed.scheme in ("", "file") and not uri.startswith("databricks")
    if is_file_store and _major_version() >= 3 and not _file_store_allowed():
        raise TrackingUriError(
            f"MLflow tracking URI {uri!r} is a file store (./mlruns), which MLflow 3 no "
            "longer writes to. Use a database instead, e.g. "
            "MLFLOW_TRACKING_URI=sqlite:///mlflow.db (what `mlflow ui` opens by default), "
            "migrate old runs with `mlflow migrate-filestore`, or set "
            "MLFLOW_ALLOW_FILE_STORE=true to keep the file store."
        )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = unquote(uri[len("sqlite:///") :])
        if path and path != ":memory:":
            uri = "sqlite:///" + os.path.abspath(path)
    return uri


def active_experiment_id() -> str | None:
    """The experiment ``mlflow.set_experiment`` or ``MLFLOW_EXPERIMENT_NAME``/``_ID``
    selected, or None for MLflow's default."""
    try:  # MLflow's own resolution (set_experiment, environment, notebooks)
        from mlflow.tracking.fluent import _get_experiment_id

        return _get_experiment_id()
    except Exception:  # noqa: BLE001 - a private helper that may move
        return os.environ.get("MLFLOW_EXPERIMENT_ID")


def set_experiment_id() -> str | None:
    """The experiment id ``mlflow.set_experiment`` chose, if it was called."""
    fluent = sys.modules.get("mlflow.tracking.fluent")  # not imported: never called
    if fluent is None:
        return None
    chosen = getattr(fluent, "_active_experiment_id", None)
    return str(chosen) if chosen else None


def offline_experiment_id() -> str | None:
    """The experiment id ``mlflow.set_experiment`` or ``MLFLOW_EXPERIMENT_ID`` chose,
    read without asking the tracking server (None when neither did)."""
    return set_experiment_id() or os.environ.get("MLFLOW_EXPERIMENT_ID") or None


@dataclass(frozen=True)
class ExperimentSettings:
    """What chooses the experiment of a run that names none: MLflow's settings in the
    process that started it, read without importing MLflow (nor asking a server).
    Pinned as a run starts (``MlflowBackend.pin``), so that the writer service or
    ``mlhooks sync`` puts the run where the training process's MLflow would."""

    chosen_id: str | None = None
    """The experiment id ``mlflow.set_experiment`` chose."""
    name: str | None = None
    """``MLFLOW_EXPERIMENT_NAME``."""
    experiment_id: str | None = None
    """``MLFLOW_EXPERIMENT_ID``."""

    @classmethod
    def now(cls, *, fluent: bool = True) -> ExperimentSettings:
        """This process's settings; ``fluent``: ``mlflow.set_experiment``'s choice too."""
        return cls(
            set_experiment_id() if fluent else None,
            os.environ.get("MLFLOW_EXPERIMENT_NAME") or None,
            os.environ.get("MLFLOW_EXPERIMENT_ID") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "set_experiment": self.chosen_id,
            "MLFLOW_EXPERIMENT_NAME": self.name,
            "MLFLOW_EXPERIMENT_ID": self.experiment_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ExperimentSettings:
        """What :meth:`to_dict` gave; a value that is not text counts as not set."""
        values = data if isinstance(data, dict) else {}

        def text(key: str) -> str | None:
            value = values.get(key)
            return value if isinstance(value, str) and value else None

        return cls(
            text("set_experiment"), text("MLFLOW_EXPERIMENT_NAME"), text("MLFLOW_EXPERIMENT_ID")
        )
