"""A run's artifacts, reached through the backend's own tracking URI.

A server that proxies artifacts (``mlflow server --artifacts-destination``) gives its
runs ``mlflow-artifacts:/...`` locations, which name no server. MLflow 3 resolves them
against the client's tracking URI; MLflow 2 against its global one
(``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``), and reads ``runs:/`` URIs from
that global store too. A backend given another URI than MLflow's would then send its
artifacts and models to another server, or fail (a sqlite store proxies nothing), and
not find its models again. Here, with MLflow 2 and a backend whose URI is not MLflow's,
the run's location comes from the backend's store and a proxied one is resolved against
the backend's URI; otherwise MLflow's own calls do the work.

Imports MLflow: used on the writer thread (or in the writer service).
"""

from __future__ import annotations

import importlib.metadata
import os
import urllib.parse
from typing import Any

import mlflow

PROXIED_SCHEME = "mlflow-artifacts:"
CLIENT_RESOLVES = int(importlib.metadata.version("mlflow").split(".")[0]) >= 3
"""Whether MLflow resolves a proxied location against the client's tracking URI."""


def upload(
    client: Any,
    tracking_uri: str,
    run_id: str,
    local_path: str,
    artifact_path: str | None,
    location: str | None = None,
) -> None:
    """Store the file or folder ``local_path`` among run ``run_id``'s artifacts, under
    ``artifact_path``. ``location``: the run's artifact location, when known (its
    creation said it), so that a local one is written without asking the store."""
    repository = _local_repository(location) or _own_repository(client, tracking_uri, run_id)
    folder = os.path.isdir(local_path)
    if repository is None:
        if folder:
            client.log_artifacts(run_id, local_path, artifact_path)
        else:
            client.log_artifact(run_id, local_path, artifact_path)
    elif folder:
        repository.log_artifacts(local_path, artifact_path)
    else:
        repository.log_artifact(local_path, artifact_path)


def download(client: Any, tracking_uri: str, run_id: str, path: str, destination: str) -> str:
    """Download artifact ``path`` of run ``run_id`` into ``destination``; the local path."""
    repository = _own_repository(client, tracking_uri, run_id)
    if repository is None:
        return str(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{run_id}/{path}",
                dst_path=destination,
                tracking_uri=tracking_uri,
            )
        )
    return str(repository.download_artifacts(path, destination))


def _local_repository(location: str | None) -> Any:
    """The repository of an artifact ``location`` on this machine's file system (a
    path, or a ``file:`` URI); None for any other (a server's, a cloud bucket's), which
    MLflow's own calls reach."""
    if not location:
        return None
    scheme = urllib.parse.urlparse(location).scheme
    if scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt"):
        return None
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    return LocalArtifactRepository(location)


def _own_repository(client: Any, tracking_uri: str, run_id: str) -> Any:
    """The artifact repository of run ``run_id`` as the store at ``tracking_uri`` has
    it, where MLflow would look in its global store instead; None where MLflow's own
    calls find it."""
    if CLIENT_RESOLVES or tracking_uri == mlflow.get_tracking_uri():
        return None
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = str(client.get_run(run_id).info.artifact_uri)
    if not location.startswith(PROXIED_SCHEME):
        return get_artifact_repository(location)
    from mlflow.store.artifact import http_artifact_repo, mlflow_artifacts_repo

    proxied: Any = mlflow_artifacts_repo.MlflowArtifactsRepository  # untyped in MLflow 2
    served: Any = http_artifact_repo.HttpArtifactRepository
    return served(proxied.resolve_uri(location, tracking_uri))
