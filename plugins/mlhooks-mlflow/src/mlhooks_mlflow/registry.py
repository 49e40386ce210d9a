"""Registering a stored model in MLflow's model registry, without waiting for it.

MLflow's own ``register_model`` waits up to five minutes for a version to become
READY; the writer only asks for the version (a store that registers asynchronously
finishes on its own).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


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


def source_of(model: Any, tracking_uri: str) -> str:
    """Where a version of logged model ``model`` comes from: ``models:/<id>``, as MLflow
    registers it; its artifact location for a database registry of another tracking
    URI than MLflow's current one (which resolves ``models:/`` through that one)."""
    served = tracking_uri.startswith(("http://", "https://", "databricks"))
    if served or tracking_uri == mlflow.get_tracking_uri():
        return f"models:/{model.model_id}"
    return str(model.artifact_location)
