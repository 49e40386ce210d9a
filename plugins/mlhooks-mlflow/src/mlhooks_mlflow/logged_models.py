"""Models as MLflow 3 logged models, created from the run that trained them.

With MLflow 3, every model the backend stores is a ``LoggedModel``, as
``mlflow.<flavor>.log_model`` makes one, in these steps:

1. created in the run's experiment with the run as its source, the run's params and
   tags saying what mlhooks knows of it (``mlhooks.run_id``, ``mlhooks.model_name``,
   ``mlhooks.flavor``, ``mlhooks.step``, and a checkpoint's plain facts such as
   ``mlhooks.monitor`` and ``mlhooks.score``), and recorded as an output of the run at
   its step (a checkpoint's ``global_step`` or boosting ``iteration``, else 0);
2. saved as an MLflow model of its flavor (or as its file) into the model's artifacts,
   loadable with ``mlflow.<flavor>.load_model(f"models:/{model_id}")``;
3. linked to the run's metrics: the latest point of each, as stored when the model was
   reported (the writer applies operations in the order they were reported), with the
   dataset it was computed on. What the run logs afterwards is linked to its model of
   the whole run as it is written (the backend's ``log_batch``: the latest point of
   each metric in each batch; every point is the run's), or, for a run with several,
   when the run ends (not to checkpoints, whose values are those of their step);
4. marked READY, then registered under its ``registered_model_name``, if any.

A model whose storing fails part-way stays PENDING and is taken up again by the retry,
in this process or, found by its tags, in another (``mlhooks sync``); one that fails
for good is marked FAILED. A READY model is never stored twice; a READY model still
waiting to be registered is only registered by the retry.

In MLflow's own database store (sqlite, PostgreSQL... in this process), steps 1 to 4
are one transaction after the model's files are written where its id places them
(:mod:`.sql_models`): the same rows, no PENDING state to take up (a failure before the
commit leaves no model; the retry takes the same id), three commits fewer. A model that
reaches the writer with its run's end (a fit's model, in one bundle) ends the run in
that transaction too: a fit with its model costs the store no more commits than one
with its model among the run's artifacts. A bundle stored again (a later part of it
failed) takes up the models it stored by their ids (:meth:`LoggedModels.holding`).

MLflow names a logged model without ``/``, ``:``, ``.``, ``%`` and quotes: the mlhooks
name is kept in the tag ``mlhooks.model_name`` (``checkpoints/epoch=0-step=4``), the
MLflow name is that with ``/`` as ``-`` and the others as ``_``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from mlhooks.plugin import BackendError, LogModel, ModelArtifact

from . import models, registry
from .facts import Linked, RunFacts

if TYPE_CHECKING:  # MLflow 3 only: imported when logged models are stored
    from .sql_models import SqlModels

SUPPORTED: bool = hasattr(MlflowClient, "create_logged_model")
"""Whether the installed MLflow has logged models (MLflow 3); nothing of MLflow 3 is
imported otherwise."""
READY = "READY"
"""A logged model's status once stored whole (``LoggedModelStatus`` is a str enum)."""

MODEL_NAME_TAG = "mlhooks.model_name"
FLAVOR_TAG = "mlhooks.flavor"
STEP_TAG = "mlhooks.step"
REGISTERED_TAG = "mlhooks.registered_model_name"
VERSION_TAG = "mlhooks.model_version"
"""``<registered name>/<version>``, once the model is registered."""

_NOT_FACTS = frozenset(
    {"log_signature", "log_input_example", "sample_input", "registered_model_name"}
)
_FACT_KEY = re.compile(r"[\w.\- /]{1,200}")
"""A model fact whose name can be a tag's (``mlhooks.<name>``)."""
_SLASH = re.compile(r"/+")
_REFUSED_IN_NAMES = re.compile(r"[:.%\"']")
_UNSUPPORTED = ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "FEATURE_DISABLED")

Key = tuple[str, str, int | None]
"""A model of a run: (MLflow run id, mlhooks name, step)."""


_REFUSALS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "INVALID_STATE")
"""What MLflow's own calls would answer too (a model deleted at once, a run that is not
active): a refusal of the model, not of the one-transaction insert."""


def _refusal(error: BaseException) -> bool:
    return isinstance(error, MlflowException) and error.error_code in _REFUSALS


def logged_name(name: str) -> str:
    """The MLflow name of the logged model for mlhooks model ``name``."""
    return _REFUSED_IN_NAMES.sub("_", _SLASH.sub("-", name.strip("/"))) or "model"


def is_unsupported(error: BaseException) -> bool:
    """Whether ``error`` says the store has no logged models (an MLflow 2 server, which
    answers their endpoints with a plain 404)."""
    return isinstance(error, MlflowException) and error.error_code in _UNSUPPORTED


class LoggedModels:
    """Stores models as logged models, for one backend (on its writer thread)."""

    def __init__(
        self,
        client: Callable[[], Any],
        run_id_tag: str,
        retryable: Callable[[BaseException], bool],
        registry_retryable: Callable[[BaseException], bool],
        tracking_uri: str,
    ) -> None:
        """``client`` gives the backend's MlflowClient; ``retryable`` and
        ``registry_retryable`` say whether an error of the store or of the registry
        is worth trying again."""
        self._client = client
        self._run_id_tag = run_id_tag
        self._retryable = retryable
        self._registry_retryable = registry_retryable
        self._tracking_uri = tracking_uri
        self._pending: dict[Key, str] = {}
        """Models created (or their ids chosen) but not yet stored whole, for the retry
        to take up."""
        self._stored: dict[int, tuple[LogModel, str]] = {}
        """The models stored so far of the bundle being stored (see :meth:`holding`),
        by their operation's id (the operation kept, so that the id stays its own): a
        bundle stored again after a later part of it failed takes each of them up by
        its id (registering it, if that is what failed) instead of storing it twice."""
        self._holding = False

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """While a bundle is stored: remember the models stored, and forget them once the
        bundle is stored whole; after a failure keep them for the bundle's next try (or,
        one by one, its operations'). A model stored outside a bundle is forgotten as
        soon as it is stored whole."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        self._stored.clear()  # reached only when the bundle was stored whole

    def store(
        self,
        op: LogModel,
        mlflow_id: str,
        facts: RunFacts,
        end: tuple[str, int] | None = None,
    ) -> bool:
        """Store ``op``'s model as a logged model of run ``mlflow_id``; with ``end`` (a
        status and an end time), end the run in the model's own transaction where the
        store takes both at once. Whether it did (if not, the run is still to be
        ended)."""
        artifact = op.model
        key: Key = (mlflow_id, artifact.name, artifact.step)
        ended = False
        stored = self._stored.get(id(op))
        if stored is not None and stored[0] is op:
            self._pending[key] = stored[1]  # taken up by its id
        try:
            resumed = self._resume(key, facts)
            at_once = self._at_once if resumed is None else None
            if at_once is not None:
                model = self._store_at_once(at_once, op, key, mlflow_id, facts, end)
                ended = end is not None
            else:
                model = resumed or self._create(op, mlflow_id, facts)
                self._pending[key] = model.model_id
                if model.status != READY:
                    self._finish(model, artifact, mlflow_id, facts, resumed is not None)
            self._stored[id(op)] = (op, str(model.model_id))
            wanted = artifact.metadata.get("registered_model_name")
            if isinstance(wanted, str) and wanted and VERSION_TAG not in model.tags:
                self._register(model, artifact, wanted, mlflow_id)
        except Exception as error:
            if self._retryable(error) or is_unsupported(error):
                raise
            self._pending.pop(key, None)
            if not self._holding:
                self._stored.pop(id(op), None)
            if isinstance(error, BackendError):
                raise
            raise BackendError(
                f"MLflow refused model {artifact.name!r} of run {mlflow_id} as a logged model "
                f"({type(error).__name__}: {error})",
                retryable=False,
            ) from error
        self._pending.pop(key, None)
        if not self._holding:
            self._stored.pop(id(op), None)
        return ended

    def run_ended(self, mlflow_id: str, facts: RunFacts) -> None:
        """Link what the run logged after its models were stored (its final values
        and params) to its models of the whole run."""
        client = self._client()
        for linked in facts.models:
            later = {
                key: point
                for key, point in facts.metrics.items()
                if linked.points.get(key) != point[1:]
            }
            if later:
                self._log_links(client, linked.model_id, mlflow_id, facts, later)
                linked.points.update({key: point[1:] for key, point in later.items()})
            params = {k: v for k, v in facts.params.items() if linked.params.get(k) != v}
            if params:
                client.log_model_params(linked.model_id, params)
                linked.params.update(params)

    # -- the steps --------------------------------------------------------------------------

    def _resume(self, key: Key, facts: RunFacts) -> Any:
        """The logged model an earlier try of this model left unfinished, if any."""
        client = self._client()
        known = self._pending.get(key)
        if known is not None:
            try:
                return client.get_logged_model(known)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                return None  # its one transaction did not commit (or it was deleted)
        if facts.whole:  # a run this backend created: no one else stored its models
            return None
        mlflow_id, name, step = key
        found = client.search_logged_models(
            [facts.experiment_id],
            filter_string=f"source_run_id = '{mlflow_id}' AND name = '{logged_name(name)}'",
        )
        for model in found:
            tags = model.tags
            same = tags.get(MODEL_NAME_TAG) == name and tags.get(STEP_TAG) == _text(step)
            unfinished = model.status != READY or (
                REGISTERED_TAG in tags and VERSION_TAG not in tags
            )
            if same and unfinished:
                return model
        return None

    @functools.cached_property
    def _at_once(self) -> SqlModels | None:
        """The store's one-transaction writer of logged models, for MLflow's own
        database store; None for any other (see :mod:`.sql_models`)."""
        from .sql_models import sql_models_of  # MLflow 3's entities: not on MLflow 2

        return sql_models_of(self._client(), self._tracking_uri)

    def _store_at_once(
        self,
        sql: SqlModels,
        op: LogModel,
        key: Key,
        mlflow_id: str,
        facts: RunFacts,
        end: tuple[str, int] | None,
    ) -> Any:
        """The model's files written where its id places them, then the model inserted
        READY with its tags, params, the run's output and the links of the run's
        metrics (and the run's ``end``, if given), in one transaction. A retry (the
        insert did not commit) takes the same id, and writes the same files over."""
        artifact = op.model
        from .sql_models import new_model_id

        model_id = self._pending.get(key) or new_model_id()
        self._pending[key] = model_id
        location = sql.artifact_location(facts.experiment_id, model_id)
        with models.temporary_directory() as directory:
            description = Model(
                artifact_path=location, run_id=mlflow_id, model_uuid=model_id, model_id=model_id
            )
            sql.write_files(location, models.save_mlflow_model(artifact, directory, description))
        points = dict(facts.metrics)
        try:
            model = sql.insert(
                model_id,
                facts.experiment_id,
                logged_name(artifact.name),
                mlflow_id,
                artifact.step or 0,
                self._tags(op),
                dict(facts.params),
                _links(model_id, mlflow_id, facts, points),
                end,
            )
        except Exception as error:
            if self._retryable(error) or _refusal(error):
                raise
            # Tables of another MLflow than the one this was written for: from now on
            # MLflow's public calls store models (the retry takes them), and nothing is
            # lost for an insert this version of the tables does not take.
            self.__dict__["_at_once"] = None
            raise BackendError(
                f"logged model {model_id!r}: one-transaction insert failed "
                f"({type(error).__name__}: {error}); storing it through MLflow's API",
                retryable=True,
            ) from error
        if artifact.step is None:
            linked = {k: point[1:] for k, point in points.items()}
            facts.models.append(Linked(model_id, linked, dict(facts.params)))
        return model

    def _tags(self, op: LogModel) -> dict[str, str]:
        """What mlhooks knows of the model, as its tags."""
        artifact = op.model
        tags = {
            self._run_id_tag: op.run_id,
            MODEL_NAME_TAG: artifact.name,
            FLAVOR_TAG: artifact.flavor,
        }
        if artifact.step is not None:
            tags[STEP_TAG] = str(artifact.step)
        for fact, value in artifact.metadata.items():
            plain = isinstance(value, (bool, int, float, str)) and len(str(value)) <= 1000
            if plain and fact not in _NOT_FACTS and _FACT_KEY.fullmatch(fact):
                tags[f"mlhooks.{fact}"] = str(value)
        wanted = artifact.metadata.get("registered_model_name")
        if isinstance(wanted, str) and wanted:
            tags[REGISTERED_TAG] = wanted
        return tags

    def _create(self, op: LogModel, mlflow_id: str, facts: RunFacts) -> Any:
        return self._client().create_logged_model(
            facts.experiment_id,
            name=logged_name(op.model.name),
            source_run_id=mlflow_id,
            tags=self._tags(op),
            params=dict(facts.params) or None,
        )

    def _finish(
        self, model: Any, artifact: ModelArtifact, mlflow_id: str, facts: RunFacts, resumed: bool
    ) -> None:
        """Record the model as an output of the run (once: a ``resumed`` model may be
        already), save it into its artifacts, link the run's metrics, mark it READY; a
        failure for good marks it FAILED."""
        from mlflow.entities import LoggedModelOutput  # MLflow 3 only

        client = self._client()
        try:
            if not resumed or not _is_output(client, mlflow_id, model.model_id):
                output = LoggedModelOutput(model.model_id, artifact.step or 0)
                client.log_outputs(mlflow_id, [output])
            if resumed:  # a server takes a new model's params 100 at a time: the rest
                stored = model.params or {}
                missing = {k: v for k, v in facts.params.items() if stored.get(k) != v}
                if missing:
                    client.log_model_params(model.model_id, missing)
            with models.temporary_directory() as directory:
                description = Model(
                    artifact_path=model.artifact_location,
                    run_id=mlflow_id,
                    model_uuid=model.model_id,
                    model_id=model.model_id,
                )
                folder = models.save_mlflow_model(artifact, directory, description)
                client.log_model_artifacts(model.model_id, folder)
            points = dict(facts.metrics)
            self._log_links(client, model.model_id, mlflow_id, facts, points)
            client.finalize_logged_model(model.model_id, READY)
        except Exception as error:
            if not self._retryable(error):
                self._mark_failed(client, model.model_id)
            raise
        if artifact.step is None:
            linked = {key: point[1:] for key, point in points.items()}
            facts.models.append(Linked(model.model_id, linked, dict(facts.params)))

    def _log_links(
        self,
        client: Any,
        model_id: str,
        mlflow_id: str,
        facts: RunFacts,
        points: dict[str, tuple[float, int, int]],
    ) -> None:
        """Link the run's stored ``points`` to the model. ``log_batch`` stores a linked
        point with the run too (these are the run's own, so the store keeps them once,
        after a failed insert); a database store is asked to insert the links alone,
        which takes one commit where ``log_batch`` takes several (a third of what a
        logged model adds to a small fit's writing)."""
        metrics = _links(model_id, mlflow_id, facts, points)
        if _insert_links(client, mlflow_id, metrics, facts.experiment_id):
            return
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(mlflow_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    def _register(self, model: Any, artifact: ModelArtifact, wanted: str, mlflow_id: str) -> None:
        client = self._client()
        try:
            with registry.model_source(model, self._tracking_uri) as source:
                version = registry.register(client, wanted, source, mlflow_id, model.model_id)
        except Exception as error:
            if self._registry_retryable(error):
                raise
            raise BackendError(
                f"model {artifact.name!r} is stored (models:/{model.model_id}), but the model "
                f"registry refused to register it as {wanted!r}: {type(error).__name__}: "
                f"{error}; `mlhooks sync --rejected --retry` registers it once that is fixed",
                retryable=False,
            ) from error
        client.set_logged_model_tags(model.model_id, {VERSION_TAG: f"{wanted}/{version}"})

    def _mark_failed(self, client: Any, model_id: str) -> None:
        try:
            client.finalize_logged_model(model_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store refuses the model: it says so itself
            return


def _links(
    model_id: str, mlflow_id: str, facts: RunFacts, points: dict[str, tuple[float, int, int]]
) -> list[Metric]:
    """The run's ``points`` as metrics linked to model ``model_id``, each with the
    dataset it was computed on."""
    metrics = []
    for key, (value, step, timestamp) in points.items():
        dataset = facts.dataset_of(key)
        metrics.append(
            Metric(
                key,
                value,
                timestamp,
                step,
                model_id=model_id,
                dataset_name=dataset.name if dataset else None,
                dataset_digest=dataset.digest if dataset else None,
                run_id=mlflow_id,
            )
        )
    return metrics


def _insert_links(client: Any, mlflow_id: str, metrics: list[Metric], experiment_id: str) -> bool:
    """Insert the links of ``metrics`` in a database store alone (MLflow's
    ``SqlAlchemyStore._log_model_metrics``, what its ``log_batch`` calls for them);
    False where that is not available (a server, another MLflow), for ``log_batch``."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    insert = getattr(store, "_log_model_metrics", None)
    if insert is None or type(store).__name__ != "SqlAlchemyStore":
        return False
    try:
        insert(mlflow_id, metrics, experiment_id=experiment_id)
    except TypeError:  # another signature in another MLflow: the public way
        return False
    return True


def _is_output(client: Any, mlflow_id: str, model_id: str) -> bool:
    outputs = client.get_run(mlflow_id).outputs
    return any(o.model_id == model_id for o in (outputs.model_outputs if outputs else []))


def _text(step: int | None) -> str | None:
    return None if step is None else str(step)
