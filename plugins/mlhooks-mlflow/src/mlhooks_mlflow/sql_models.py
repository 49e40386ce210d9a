"""A logged model written in one transaction of MLflow's own database store.

MLflow's public API stores a logged model in four transactions and eight sessions of a
SQL store (``create_logged_model``, ``log_outputs``, the links of its metrics,
``finalize_logged_model``, with an experiment and the model read back in between); on
a sqlite store each commit waits for the disk, and together they made a fit with its
logged model about a fifth slower to store than one with its model among the run's
artifacts. Here the model's id is chosen first (as MLflow chooses it), its files are
written to its artifact location, then one transaction inserts the model READY with its
tags and params, the run's output and the links of the run's metrics: the same rows
``mlflow.<flavor>.log_model`` leaves. A failure before the commit leaves no model, only
files that the retry (same id) writes over.

This uses ``SqlAlchemyStore``'s session maker and table models, which are not public
API: it applies only to that exact class with the members it uses, and
:func:`sql_models_of` answers None for anything else (a server, a workspace-aware
store, another MLflow), which then takes the public calls.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mlflow.entities import LoggedModel, LoggedModelStatus, Metric
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact import artifact_repository_registry
from mlflow.utils import uri

_STORE_MEMBERS = (
    "ManagedSessionMaker",
    "get_experiment",
    "_get_run",
    "_check_run_is_active",
    "sanitize_metric_value",
)


def new_model_id() -> str:
    """A logged model id as MLflow's SQL store makes them (``m-`` and a uuid4's hex)."""
    return f"m-{uuid.uuid4().hex}"


class SqlModels:
    """Logged models inserted into ``store`` (a ``SqlAlchemyStore``) in one transaction."""

    def __init__(self, store: Any, tracking_uri: str) -> None:
        from mlflow.store.tracking.dbmodels import models as tables

        self._store = store
        self._tracking_uri = tracking_uri
        self._tables: Any = tables
        self._locations: dict[str, str] = {}
        """Experiments' artifact locations (they never change), by id."""

    def artifact_location(self, experiment_id: str, model_id: str) -> str:
        """Where model ``model_id`` of ``experiment_id`` keeps its files, as MLflow
        places them (``<experiment's location>/models/<id>/artifacts``)."""
        root = self._locations.get(experiment_id)
        if root is None:
            root = self._store.get_experiment(experiment_id).artifact_location
            self._locations[experiment_id] = root
        join: Any = uri.append_to_uri_path  # untyped
        return str(join(root, "models", model_id, "artifacts"))

    def write_files(self, location: str, folder: str) -> None:
        """The files of ``folder`` into ``location`` (what ``log_model_artifacts`` does
        once it has read the model back for its location)."""
        repository: Any = artifact_repository_registry.get_artifact_repository(
            location, tracking_uri=self._tracking_uri
        )
        repository.log_artifacts(folder)

    def insert(
        self,
        model_id: str,
        experiment_id: str,
        name: str,
        run_id: str,
        step: int,
        tags: dict[str, str],
        params: dict[str, str],
        links: list[Metric],
        end: tuple[str, int] | None = None,
    ) -> LoggedModel:
        """Insert the model READY, with ``tags``, ``params``, the run's output at
        ``step`` and the metric ``links`` (one point per key), in one transaction; the
        model as stored. With ``end`` (a status and an end time), the run ends in the
        same transaction, as ``set_terminated`` ends it. A run that is not active is
        refused as ``log_outputs`` refuses it; a model the store hides as soon as it is
        inserted (deleted) is refused as MLflow's next call would refuse it ("not
        found"), left FAILED, and the run not ended."""
        t = self._tables
        now = int(time.time() * 1000)
        location = self.artifact_location(experiment_id, model_id)
        refused = False
        with self._store.ManagedSessionMaker(read_only=False) as session:
            run = self._store._get_run(session=session, run_uuid=run_id)
            self._store._check_run_is_active(run)
            row = t.SqlLoggedModel(
                model_id=model_id,
                experiment_id=experiment_id,
                name=name,
                artifact_location=location,
                creation_timestamp_ms=now,
                last_updated_timestamp_ms=now,
                status=LoggedModelStatus.READY.to_int(),
                lifecycle_stage=LifecycleStage.ACTIVE,
                source_run_id=run_id,
            )
            session.add(row)
            session.add_all(
                t.SqlLoggedModelTag(
                    model_id=model_id, experiment_id=experiment_id, tag_key=k, tag_value=v
                )
                for k, v in tags.items()
            )
            session.add_all(
                t.SqlLoggedModelParam(
                    model_id=model_id, experiment_id=experiment_id, param_key=k, param_value=v
                )
                for k, v in params.items()
            )
            session.add(
                t.SqlInput(
                    input_uuid=uuid.uuid4().hex,
                    source_type="RUN_OUTPUT",
                    source_id=run_id,
                    destination_type="MODEL_OUTPUT",
                    destination_id=model_id,
                    step=step,
                )
            )
            session.add_all(
                t.SqlLoggedModelMetric(
                    model_id=model_id,
                    metric_name=m.key,
                    metric_timestamp_ms=m.timestamp,
                    metric_step=m.step,
                    metric_value=self._store.sanitize_metric_value(m.value)[1],
                    experiment_id=experiment_id,
                    run_id=run_id,
                    dataset_name=m.dataset_name,
                    dataset_digest=m.dataset_digest,
                )
                for m in links
            )
            session.flush()
            stage = (
                session.query(t.SqlLoggedModel.lifecycle_stage)
                .filter(t.SqlLoggedModel.model_id == model_id)
                .scalar()
            )
            if stage == LifecycleStage.DELETED:
                refused = True
                session.query(t.SqlLoggedModel).filter(
                    t.SqlLoggedModel.model_id == model_id
                ).update({"status": LoggedModelStatus.FAILED.to_int()})
            elif end is not None:
                run.status, run.end_time = end
                session.add(run)
        if refused:
            raise MlflowException(
                f"Logged model with ID '{model_id}' not found.", RESOURCE_DOES_NOT_EXIST
            )
        return LoggedModel(
            experiment_id=experiment_id,
            model_id=model_id,
            name=name,
            artifact_location=location,
            creation_timestamp=now,
            last_updated_timestamp=now,
            source_run_id=run_id,
            status=LoggedModelStatus.READY,
            tags=tags,
            params=params,
        )


def sql_models_of(client: Any, tracking_uri: str) -> SqlModels | None:
    """:class:`SqlModels` for ``client``'s store when it is MLflow's own
    ``SqlAlchemyStore`` with the members used (else None: the public calls)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store).__name__ != "SqlAlchemyStore":
        return None
    if not all(hasattr(store, member) for member in _STORE_MEMBERS):
        return None
    try:
        return SqlModels(store, tracking_uri)
    except (ImportError, AttributeError):
        return None
