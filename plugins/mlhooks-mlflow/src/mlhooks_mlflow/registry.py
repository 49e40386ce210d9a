"""Registering a stored model in MLflow's model registry, without waiting for it.

MLflow's own ``register_model`` waits up to five minutes for a version to become
READY; the writer only asks for the version (a store that registers asynchronously
finishes on its own).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from mlhooks.plugin import in_writer_service

_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")
_VARIABLE = "MLFLOW_TRACKING_URI"
_pointing = threading.Lock()
"""Held while MLflow's tracking URI points at a store to register a model there."""


def register(client: Any, name: str, source: str, run_id: str, model_id: str | None = None) -> str:
    """A new version of registered model ``name`` (created if needed) from ``source``;
    returns the version. ``model_id``: the MLflow 3 logged model it promotes."""
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code not in _EXISTS:
            raise
    linked = {"model_id": model_id} if model_id is not None else {}
    version = client.create_model_version(
        name, source, run_id=run_id, await_creation_for=0, **linked
    )
    return str(version.version)


@contextmanager
def model_source(model: Any, tracking_uri: str) -> Iterator[str]:
    """What to register a version of logged model ``model`` (of the store at
    ``tracking_uri``) from, while the registry can resolve it: ``models:/<id>``, as
    MLflow registers it. A server resolves it itself; a database registry through
    MLflow's tracking URI in this process, so: where that is the store already; in the
    writer service, where no user code runs, with MLflow pointed at the store
    meanwhile (one registration at a time); else (MLflow's URI is the user's, which
    mlhooks does not move) the model's artifact location."""
    by_id = f"models:/{model.model_id}"
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        yield by_id
    elif not in_writer_service():
        yield by_id if tracking_uri == mlflow.get_tracking_uri() else str(model.artifact_location)
    else:
        with _pointing:
            current = mlflow.get_tracking_uri()
            if current == tracking_uri:
                yield by_id
                return
            variable = os.environ.get(_VARIABLE)  # MLflow sets it too
            mlflow.set_tracking_uri(tracking_uri)
            try:
                yield by_id
            finally:
                mlflow.set_tracking_uri(current)
                if variable is None:
                    os.environ.pop(_VARIABLE, None)
                else:
                    os.environ[_VARIABLE] = variable
