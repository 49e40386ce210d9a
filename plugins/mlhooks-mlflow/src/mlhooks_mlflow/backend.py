"""The MLflow backend: mlhooks operations as MlflowClient calls.

Runs get MLflow's own run ids; the mlhooks run id is kept as the tag ``mlhooks.run_id``
so that a replay in another process (``mlhooks sync``) finds the MLflow run again
instead of creating a second one.
"""

from __future__ import annotations

import functools
import getpass
import importlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

from mlhooks import DatasetInfo, RunInfo
from mlhooks import Metric as MlhooksMetric
from mlhooks.plugin import (
    Backend,
    BackendError,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    Operation,
    StartRun,
    notice_once,
    redact_text,
    warn_background,
)

from . import fresh_store, models
from . import mlflow_api as mlf
from .bundling import Folded
from .connection import answers, bounded_requests, is_served
from .location import (
    ExperimentSettings,
    active_experiment_id,
    offline_experiment_id,
    resolve_tracking_uri,
)
from .races import is_transient_race, store_creation_lock

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput, Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from .facts import RunFacts, RunFactsBook
    from .logged_models import LoggedModels


class _OnFirstUse:
    """A module of this package that imports MLflow, imported on first use (see
    :mod:`.mlflow_api`)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            mlf.load()
            self._module = importlib.import_module(self._name, __package__)
        return getattr(self._module, attribute)


logged_models = _OnFirstUse(".logged_models")
reading = _OnFirstUse(".reading")
registry = _OnFirstUse(".registry")
run_artifacts = _OnFirstUse(".run_artifacts")
facts = _OnFirstUse(".facts")

RUN_ID_TAG = "mlhooks.run_id"
_KEY_ALLOWED = re.compile(r"[^/\w.\- :]")
_PERMANENT_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
"""The kind of experiment whose UI opens on "Model training" (MLflow 3)."""


class MlflowBackend(Backend):
    """Writes runs to an MLflow tracking store.

    Args:
        tracking_uri: where to write; default ``MLFLOW_TRACKING_URI`` /
            ``mlflow.set_tracking_uri``, else MLflow's default ``sqlite:///mlflow.db``.
        experiment: experiment name for runs that name none; default the experiment of
            ``mlflow.set_experiment`` / ``MLFLOW_EXPERIMENT_NAME``, else MLflow's default.
        experiment_id: the id of that experiment instead of its name (how a spool
            remembers ``MLFLOW_EXPERIMENT_ID`` or ``mlflow.set_experiment``).
    """

    name: ClassVar[str] = "mlflow"
    out_of_process: ClassVar[bool] = True
    max_batch_size: ClassVar[int] = 1000  # MLflow's MAX_METRICS_PER_BATCH (tested)
    # Each MLflow call costs milliseconds of Python (and GIL) whatever its size: gather
    # points for a second rather than write 20 small batches.
    write_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        experiment_id: str | None = None,
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.experiment_id = experiment_id
        self._follows_mlflow = tracking_uri is None
        self._client: MlflowClient | None = None
        self._ids: dict[str, str] = {}
        self._locations: dict[str, str] = {}
        """The artifact location of each MLflow run created here, by its MLflow id (for
        uploads that need not ask the store for it)."""
        self._experiment_ids: dict[str, str] = {}
        self._kinds_checked: set[str] = set()
        self._followed: dict[ExperimentSettings, str] = {}
        """Experiment ids MLflow's settings chose, by the settings."""
        self._refused: set[str] = set()
        """Experiment names of MLflow's settings that MLflow refused."""
        self._lock = threading.Lock()
        self._forked = False

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            with store_creation_lock(self.tracking_uri):  # the first process creates it
                self._client = _open_client(self.tracking_uri)
        return self._client

    @functools.cached_property
    def _logged_models(self) -> bool:
        """Whether models become MLflow 3 logged models (else run artifacts, as MLflow 2
        stores them)."""
        supported: bool = logged_models.SUPPORTED
        return supported

    @functools.cached_property
    def _facts(self) -> RunFactsBook:
        book: RunFactsBook = facts.RunFactsBook()
        return book

    @functools.cached_property
    def _models(self) -> LoggedModels:
        made: LoggedModels = logged_models.LoggedModels(
            lambda: self.client,
            RUN_ID_TAG,
            self.is_retryable,
            self._registry_may_answer_later,
            self.tracking_uri,
        )
        return made

    def prepare(self) -> None:
        """MLflow is imported here, on the writer thread, under :mod:`.mlflow_api`'s
        lock (the outage watch may import it at the same time). Not on the user's
        thread: its import is a second of CPU, which a fit would pay."""
        mlf.load()

    def prepare_model(self, flavor: str, modules: Sequence[str]) -> None:
        """Import ``modules``, MLflow's module of ``flavor`` and its pip requirements
        (kept for the save), under the lock a model's save imports under: for a
        Lightning module, seconds a fit's end would otherwise wait for."""
        mlf.load()
        models.prepare(flavor, modules)

    def describe(self) -> str:
        return f"MLflow at {redact_text(self.tracking_uri)}"

    def spec(self) -> dict[str, Any]:
        """How to build this backend again elsewhere (``mlhooks sync``): the experiment
        that MLflow's settings select now is written down, since the shell that syncs
        may not set them. Nothing here asks the (perhaps unreachable) server."""
        spec: dict[str, Any] = {"tracking_uri": self.tracking_uri, "experiment": self.experiment}
        if self.experiment is None and self.experiment_id is None and self._follows_mlflow:
            spec["experiment"] = os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
            chosen = offline_experiment_id()
            if spec["experiment"] is None and chosen is not None:
                spec["experiment_id"] = chosen
        elif self.experiment_id is not None:
            spec["experiment_id"] = self.experiment_id
        return spec

    def check(self) -> None:
        """The tracking store answers: a server's ``/health`` within 5 s (rather than
        MLflow's long retries), then one cheap query."""
        if is_served(self.tracking_uri) and not answers(self.tracking_uri, timeout=5):
            raise ConnectionError(f"{self.describe()} does not answer /health within 5s")
        with self._bounds():
            self.client.search_experiments(max_results=1)

    def reachable(self) -> bool | None:
        """Whether the tracking server answers ``/health`` within 2 s (longer for a
        server that answered slowly lately: see :func:`.connection.health_timeout`),
        asked once; None for a store that is not a server (a database, Databricks)."""
        return answers(self.tracking_uri) if is_served(self.tracking_uri) else None

    def apply(self, op: Operation) -> None:
        """Store ``op`` with mlhooks' own bounds on requests to a server: an outage is
        told within seconds, not after MLflow's minutes of retries (see
        :mod:`.connection`); the user's own ``mlflow`` calls keep MLflow's settings."""
        with self._bounds():
            super().apply(op)

    def _bounds(self) -> AbstractContextManager[None]:
        return bounded_requests() if is_served(self.tracking_uri) else nullcontext()

    def after_fork(self) -> None:
        self._client = None  # its HTTP session belongs to the parent
        self._forked = True
        for known in ("_facts", "_models"):  # runs the parent writes on
            self.__dict__.pop(known, None)

    def mlflow_run_id(self, run_id: str) -> str:
        """The MLflow run id of mlhooks run ``run_id``."""
        known = self._ids.get(run_id)
        if known is not None:
            return known
        found = self._find(run_id)
        if found is None:
            # In a forked child, the parent may not have stored the start of a run the
            # child inherited yet: worth another try (then the spool, or sync).
            raise BackendError(f"no MLflow run for mlhooks run {run_id!r}", retryable=self._forked)
        return found

    def _find(self, run_id: str) -> str | None:
        """The MLflow run tagged with ``run_id``, created by an earlier process."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(
            experiments, filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=1
        )
        if not runs:
            return None
        found: str = runs[0].info.run_id
        self._ids[run_id] = found
        return found

    # -- runs -------------------------------------------------------------------------------

    def pin(self, run: RunInfo) -> dict[str, Any] | None:
        """MLflow's experiment settings in this process as ``run`` starts, when they are
        what chooses its experiment (neither the run nor this backend names one):
        ``mlflow.set_experiment``'s choice (if the program imported MLflow) and
        ``MLFLOW_EXPERIMENT_NAME``/``_ID``, read without importing MLflow. The run then
        goes where they say wherever it is stored (the writer service, whose own
        settings are not the program's; ``mlhooks sync`` from another shell)."""
        if run.experiment is not None or self.experiment is not None or self.experiment_id:
            return None
        return self._settings_now().to_dict()

    def start_run(self, run: RunInfo) -> None:
        self._start(run, {})

    def start_pinned_run(self, run: RunInfo, pinned: dict[str, Any]) -> None:
        self._start(run, {}, ExperimentSettings.from_dict(pinned))

    def _start(
        self,
        run: RunInfo,
        logged_tags: dict[str, str],
        pinned: ExperimentSettings | None = None,
    ) -> bool:
        """Create ``run`` with ``logged_tags`` (tags it logged, clean and within
        MLflow's limits) among its own, in the experiment ``pinned`` (MLflow's settings
        as it started, see :meth:`pin`) chooses when nothing names one; False when it
        was not created here (adopted, continued, replayed), so that they are still to
        be written."""
        adopted = run.backend_ids.get(self.name)
        if adopted is not None:  # opened with mlflow.start_run(): log into it
            self._ids[run.run_id] = adopted
            return False
        existing = self._ids.get(run.run_id)
        if existing is None and run.new:
            run.new = False  # from now on it may exist: a retry, another backend look
        elif existing is None:
            existing = self._find(run.run_id)
        if existing is not None:  # a continued run, or a start replayed from a spool
            self._mark_continued(existing, run)
            return False
        tags = {**run.tags, RUN_ID_TAG: run.run_id, "mlflow.user": _user()}
        if run.description:
            tags["mlflow.note.content"] = run.description
        if run.parent_id is not None:
            tags["mlflow.parentRunId"] = self.mlflow_run_id(run.parent_id)
        experiment_id = self._experiment_id(run, pinned)
        self._open_in_model_training_view(experiment_id)
        own = {k: v[: mlf.MAX_TAG_VAL_LENGTH] for k, v in self._clean(tags, "tag").items()}
        created = self.client.create_run(
            experiment_id,
            start_time=run.start_time,
            tags={**own, **logged_tags},
            run_name=run.name,
        )
        self._ids[run.run_id] = created.info.run_id
        if created.info.artifact_uri:
            self._locations[created.info.run_id] = str(created.info.artifact_uri)
        if self._logged_models:
            self._facts.started(run.run_id, experiment_id)
        return True

    def _open_in_model_training_view(self, experiment_id: str) -> None:
        """MLflow 3's UI opens an experiment without a kind in its GenAI view; one that
        holds training runs is marked so that it opens on "Model training" (a kind the
        user chose stays)."""
        if experiment_id in self._kinds_checked:
            return
        self._kinds_checked.add(experiment_id)
        try:
            experiment = self.client.get_experiment(experiment_id)
            if EXPERIMENT_KIND_TAG not in experiment.tags:
                self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        except Exception:  # noqa: BLE001 - a view preference never holds a run back
            self._kinds_checked.discard(experiment_id)  # asked again with the next run

    def _mark_continued(self, mlflow_id: str, run: RunInfo) -> None:
        """A run started again after it ended (a resumed training, an evaluation after
        the fit) is RUNNING until its next end. A start replayed from a spool is not
        later than the run's end (the same millisecond, for a run that short), and
        leaves it as it is."""
        ended = self.client.get_run(mlflow_id).info.end_time
        if ended is not None and run.start_time > ended:
            self.client.update_run(mlflow_id, status=mlf.RunStatus.to_string(mlf.RunStatus.RUNNING))

    def _experiment_id(self, run: RunInfo, pinned: ExperimentSettings | None) -> str:
        """The experiment ``run`` names, else the one MLflow's settings ``pinned`` as it
        started choose (they were what chose it then), else this backend's, else the
        one MLflow's settings choose now (a start recorded before starts were pinned)."""
        if run.experiment is not None:
            return self._named_experiment_id(run.experiment)
        if pinned is None and self.experiment is not None:
            return self._named_experiment_id(self.experiment)
        if pinned is None and self.experiment_id:
            return self.experiment_id
        settings = pinned or self._settings_now()
        if self._follows_mlflow:
            found = self._followed_experiment_id(settings)
            if found is not None:
                return found
        return self._experiment_of(settings)

    def _settings_now(self) -> ExperimentSettings:
        """MLflow's settings that this backend follows, in this process now:
        ``mlflow.set_experiment`` too when it also follows MLflow's tracking URI."""
        return ExperimentSettings.now(fluent=self._follows_mlflow)

    def _followed_experiment_id(self, settings: ExperimentSettings) -> str | None:
        """The experiment MLflow's ``settings`` choose, as :func:`active_experiment_id`
        finds it while they are this process's settings (else None). With
        ``MLFLOW_EXPERIMENT_NAME`` or ``_ID`` set, that is a query (and a new client)
        per run: kept for as long as the settings stay the same."""
        if settings != self._settings_now():  # changed since the run started
            return None
        if settings.name is None and settings.experiment_id is None:
            return active_experiment_id()  # mlflow.set_experiment or the default: no query
        with self._lock:
            found = self._followed.get(settings)
            if found is None:
                found = active_experiment_id()
                if found is not None:
                    self._followed[settings] = found
            return found

    def _experiment_of(self, settings: ExperimentSettings) -> str:
        """The experiment MLflow's ``settings`` choose, as MLflow would in the process
        they come from: ``mlflow.set_experiment``'s, else ``MLFLOW_EXPERIMENT_NAME``'s
        (created if needed), else ``MLFLOW_EXPERIMENT_ID``, else the default. A name
        MLflow refuses is told once, and its runs go to the default experiment."""
        if settings.chosen_id is not None:
            return settings.chosen_id
        if settings.name is None:
            return settings.experiment_id or "0"
        if settings.name in self._refused:
            return "0"
        try:
            return self._named_experiment_id(settings.name)
        except Exception as error:
            if self.is_retryable(error):
                raise
            self._refused.add(settings.name)  # for good: not asked again
            warn_background(
                f"mlflow-experiment-refused:{settings.name}",
                f"mlhooks: MLflow refuses the experiment {_shown(settings.name)} that "
                f"MLFLOW_EXPERIMENT_NAME names ({type(error).__name__}: "
                f"{_shown(str(error))}); its runs go to MLflow's default experiment",
            )
            return "0"

    def _named_experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if needed (asked once per name)."""
        with self._lock:
            cached = self._experiment_ids.get(name)
            if cached is None:
                experiment = self.client.get_experiment_by_name(name)
                cached = (
                    experiment.experiment_id
                    if experiment is not None
                    else self.client.create_experiment(name)
                )
                self._experiment_ids[name] = cached
            return cached

    def end_run(self, op: EndRun) -> None:
        mlflow_id = self.mlflow_run_id(op.run_id)
        self._link_final_values(op.run_id, mlflow_id)
        self.client.set_terminated(
            mlflow_id, mlf.RunStatus.to_string(_status(op.status)), op.end_time
        )

    # -- writes -----------------------------------------------------------------------------

    def log_batch(self, batch: LogBatch) -> None:
        mlflow_id = self.mlflow_run_id(batch.run_id)
        keys = self._clean_keys([k for k, _, _, _ in batch.metrics], "metric")
        metrics = [mlf.Metric(keys[k], v, t, s) for k, v, s, t in batch.metrics]
        params = [
            mlf.Param(k, self._truncate(k, v, mlf.MAX_PARAM_VAL_LENGTH, "param"))
            for k, v in self._clean(batch.params, "param").items()
        ]
        tags = [
            mlf.RunTag(k, self._truncate(k, v, mlf.MAX_TAG_VAL_LENGTH, "tag"))
            for k, v in self._clean(batch.tags, "tag").items()
        ]
        facts = self._facts.get(batch.run_id) if self._logged_models else None
        model = facts.only_model() if facts is not None else None
        if facts is not None and model is not None and metrics:  # values after the model
            metrics = facts.linked(metrics, model, mlflow_id)
        for chunk_metrics, chunk_params, chunk_tags in _chunks(metrics, params, tags):
            self.client.log_batch(
                mlflow_id, metrics=chunk_metrics, params=chunk_params, tags=chunk_tags
            )
        if self._logged_models:
            self._facts.batch(batch.run_id, metrics, params, model)

    def bundles(self, op: Operation) -> bool:
        """A run's start, params and tags, datasets, files, logged models and end are
        stored together: each is harmless to store twice (a start tried again looks for
        its run, a param or tag of the same value and a dataset already there are left
        as they are, a file is written over, a run ended again ends once, and a bundle
        stored again takes up the logged models it stored by their ids: see
        :meth:`.LoggedModels.holding`). Metric points are not, nor models stored among
        a run's artifacts (MLflow 2), whose registration would be made twice."""
        if isinstance(op, LogBatch):
            return not op.metrics
        if isinstance(op, LogModel):
            return self._logged_models
        return isinstance(op, StartRun | LogDataset | LogArtifact | EndRun)

    def apply_bundle(self, ops: list[Operation]) -> None:
        """In as few writes as MLflow's API allows (each a transaction of a SQL store, a
        request to a server): a new run created with the bundle's tags, its params (and
        the tags creating it could not take) in one ``log_batch``, its datasets in one
        ``log_inputs``, then its files; a run's last logged model and its end in one
        transaction of MLflow's own database store. Models in between are stored one
        by one. A part that cannot be folded (a param given two values, a second
        start) is stored one by one."""
        if not any(isinstance(op, LogModel | EndRun) for op in ops):
            self._apply_folded(ops)
            return
        with self._models.holding() if self._logged_models else nullcontext():
            self._apply_in_parts(ops)

    def _apply_in_parts(self, ops: list[Operation]) -> None:
        """``ops`` with models or an end among them: the parts between them folded,
        each model alone, a model followed by the run's end with it."""
        part: list[Operation] = []
        index = 0
        while index < len(ops):
            op = ops[index]
            index += 1
            if not isinstance(op, LogModel | EndRun):
                part.append(op)
                continue
            if part:
                self._apply_folded(part)
                part = []
            following = ops[index] if index < len(ops) else None
            if isinstance(op, LogModel) and isinstance(following, EndRun):
                self._store_model_and_end(op, following)
                index += 1
            else:
                self.apply(op)
        if part:
            self._apply_folded(part)

    def _store_model_and_end(self, op: LogModel, end: EndRun) -> None:
        """Store model ``op`` and end its run: in one transaction where the store takes
        both (MLflow's own database store), else one after the other."""
        if op.model.format == op.model.UNSAVEABLE:
            self.apply(op)  # refused, with its reason
        elif self._store_model(op, end):
            return
        self.apply(end)

    def _apply_folded(self, ops: list[Operation]) -> None:
        if len(ops) == 1:
            self.apply(ops[0])
            return
        folded = Folded.of(ops)
        if folded is None:
            super().apply_bundle(ops)
            return
        tags = {
            k: self._truncate(k, v, mlf.MAX_TAG_VAL_LENGTH, "tag")
            for k, v in self._clean(folded.tags, "tag").items()
        }
        if folded.start is not None:
            at_start = {k: v for k, v in tags.items() if folded.creation_takes(k)}
            start = folded.start
            pinned = ExperimentSettings.from_dict(start.pinned) if start.pinned else None
            if self._start(start.run, at_start, pinned):
                tags = {k: v for k, v in tags.items() if k not in at_start}
        mlflow_id = self.mlflow_run_id(folded.run_id)
        params = [
            mlf.Param(k, self._truncate(k, v, mlf.MAX_PARAM_VAL_LENGTH, "param"))
            for k, v in self._clean(folded.params, "param").items()
        ]
        for _, chunk_params, chunk_tags in _chunks(
            [], params, [mlf.RunTag(k, v) for k, v in tags.items()]
        ):
            self.client.log_batch(mlflow_id, params=chunk_params, tags=chunk_tags)
        if folded.datasets:
            inputs = [_dataset_input(dataset.dataset) for dataset in folded.datasets]
            self.client.log_inputs(mlflow_id, datasets=inputs)
        for file in folded.files:
            self.log_artifact(file)
        if self._logged_models:
            self._facts.batch(folded.run_id, [], params, None)
            for dataset in folded.datasets:
                info = dataset.dataset
                self._facts.dataset(folded.run_id, info.name, info.digest, info.context)

    def log_dataset(self, op: LogDataset) -> None:
        mlflow_id = self.mlflow_run_id(op.run_id)
        self.client.log_inputs(mlflow_id, datasets=[_dataset_input(op.dataset)])
        if self._logged_models:
            info = op.dataset
            self._facts.dataset(op.run_id, info.name, info.digest, info.context)

    def log_artifact(self, op: LogArtifact) -> None:
        self._upload(self.mlflow_run_id(op.run_id), op.local_path, op.artifact_path)

    def _upload(self, mlflow_id: str, local_path: str, artifact_path: str | None) -> None:
        """Store ``local_path`` among MLflow run ``mlflow_id``'s artifacts, straight to
        its artifact location when this backend created the run and it is local."""
        run_artifacts.upload(
            self.client,
            self.tracking_uri,
            mlflow_id,
            local_path,
            artifact_path,
            self._locations.get(mlflow_id),
        )

    def log_model(self, op: LogModel) -> None:
        """An MLflow 3 logged model created from the run (see :mod:`.logged_models`);
        with MLflow 2, an MLflow model among the run's artifacts."""
        self._store_model(op, None)

    def _store_model(self, op: LogModel, end: EndRun | None) -> bool:
        """Store model ``op`` (see :meth:`log_model`); with the run's ``end`` in the
        logged model's own transaction where the store takes both. Whether the end was
        stored."""
        mlflow_id = self.mlflow_run_id(op.run_id)
        if self._logged_models:
            ending = None
            if end is not None:
                self._link_final_values(op.run_id, mlflow_id)  # to the run's earlier models
                ending = (mlf.RunStatus.to_string(_status(end.status)), end.end_time)
            try:
                facts = self._facts_of(op.run_id, mlflow_id)
                return self._models.store(op, mlflow_id, facts, ending)
            except mlf.MlflowException as error:
                if not logged_models.is_unsupported(error):
                    raise
                self._logged_models = False
                notice_once(
                    f"mlflow-no-logged-models:{self.tracking_uri}",
                    f"mlhooks: {self.describe()} has no logged models (an MLflow 2 server): "
                    "models are stored among their runs' artifacts",
                )
        with models.temporary_directory() as directory:
            folder = models.save_mlflow_model(op.model, directory)
            self._upload(mlflow_id, folder, op.model.name)
        registered = op.model.metadata.get("registered_model_name")
        if registered:
            source = f"runs:/{mlflow_id}/{op.model.name}"
            registry.register(self.client, registered, source, mlflow_id)
        return False

    def _facts_of(self, run_id: str, mlflow_id: str) -> RunFacts:
        """What a logged model of ``run_id`` is created from: what this backend wrote
        of the run, or for a run it did not write whole, the run as stored now."""
        known = self._facts.get(run_id)
        if known is not None and known.whole:
            return known
        found: RunFacts = facts.facts_from_store(self.client, mlflow_id)
        if known is not None:
            found.models = known.models
        self._facts.keep(run_id, found)
        return found

    def _link_final_values(self, run_id: str, mlflow_id: str) -> None:
        """Link the values the run logged after its models to them, before it ends. A
        store that refuses leaves the models with the values of their time: one
        warning, and the run still ends."""
        known = self._facts.get(run_id)
        if known is None or not known.models:
            return
        try:
            self._models.run_ended(mlflow_id, self._facts_of(run_id, mlflow_id))
        except Exception as error:
            if self.is_retryable(error):
                raise  # the end is tried again, with what is not linked yet
            warn_background(
                f"mlflow-final-links:{type(error).__name__}",
                f"mlhooks: MLflow refused to link the final values of run {run_id!r} to its "
                f"models ({type(error).__name__}: {error}); they keep the values of the "
                "moment they were stored",
            )

    def _registry_may_answer_later(self, error: BaseException) -> bool:
        """Whether registering a model is worth trying again after ``error``: the
        registry could not be reached, not that it refused."""
        if isinstance(error, OSError | ConnectionError | TimeoutError) or is_transient_race(error):
            return True
        return self.reachable() is False

    # -- search -----------------------------------------------------------------------------

    def search_runs(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """Rows as ``mlflow.search_runs`` names its columns; ``run_id`` is MLflow's id."""
        ids = self._searched_experiments(experiment)
        if not ids:
            return []
        runs = self.client.search_runs(
            ids, filter_string=filter_string, order_by=order_by or None, max_results=50_000
        )
        return [_row(run) for run in runs]

    def search_models(
        self, experiment: str | None, filter_string: str, order_by: list[str]
    ) -> list[dict[str, Any]]:
        """The logged models as rows (``run_id``: MLflow's, as in :meth:`search_runs`);
        the filter and order are those of MLflow's logged model search."""
        if self._logged_models:
            ids = self._searched_experiments(experiment)
            try:
                return reading.model_rows(self.client, ids, filter_string, order_by) if ids else []
            except mlf.MlflowException as error:
                if not logged_models.is_unsupported(error):
                    raise
                self._logged_models = False  # an MLflow 2 server
        raise ValueError(
            f"{self.describe()} keeps models among their runs' artifacts (MLflow 2): "
            "searching models needs MLflow 3's logged models; find the runs with "
            "mlhooks.search_runs and load their models with mlhooks.load_model"
        )

    def load_model(self, run_id: str, name: str) -> Any:
        """Model ``name`` of a run (its mlhooks or MLflow id), loaded: the run's logged
        model of that name, else the model among its artifacts (MLflow 2)."""
        mlflow_id = self._ids.get(run_id) or self._find(run_id) or run_id
        found = None
        if self._logged_models:
            try:
                found = reading.find_logged_model(self.client, mlflow_id, name)
            except mlf.MlflowException as error:
                if not logged_models.is_unsupported(error):
                    raise
                self._logged_models = False  # an MLflow 2 server
        if found is not None:  # its location: MLflow resolves models:/ by its own URI
            return reading.load_from(found.artifact_location, self.tracking_uri)
        try:
            return reading.load_with(
                lambda folder: run_artifacts.download(
                    self.client, self.tracking_uri, mlflow_id, name, folder
                )
            )
        except mlf.MlflowException as error:
            raise KeyError(
                f"run {run_id!r} has no model {name!r} in {self.describe()} ({error.message})"
            ) from None

    def _searched_experiments(self, experiment: str | None) -> list[str]:
        if experiment is None:
            return [e.experiment_id for e in self.client.search_experiments()]
        found = self.client.get_experiment_by_name(experiment)
        return [found.experiment_id] if found is not None else []

    def get_metric_history(self, run_id: str, key: str) -> list[MlhooksMetric]:
        """Every point of ``key``; ``run_id`` may be the mlhooks or the MLflow id."""
        mlflow_id = self._ids.get(run_id) or self._find(run_id) or run_id
        return [
            MlhooksMetric(m.key, m.value, m.step, m.timestamp)
            for m in self.client.get_metric_history(mlflow_id, key)
        ]

    # -- errors -----------------------------------------------------------------------------

    def is_retryable(self, error: BaseException) -> bool:
        """Server trouble is retried; a value or object MLflow cannot take is not."""
        if isinstance(error, BackendError):
            return error.retryable
        if is_transient_race(error):  # several processes on one SQL store
            return True
        if isinstance(error, mlf.RestException | mlf.MlflowException):
            return error.error_code not in _PERMANENT_CODES
        return isinstance(error, OSError | ConnectionError | TimeoutError)

    # -- sanitizing -------------------------------------------------------------------------

    def _clean_keys(self, keys: Sequence[str], what: str) -> dict[str, str]:
        return {key: _mlflow_key(key, what) for key in set(keys)}

    def _clean(self, values: dict[str, str], what: str) -> dict[str, str]:
        return {_mlflow_key(k, what): v for k, v in values.items()}

    def _truncate(self, key: str, value: str, limit: int, what: str) -> str:
        if len(value) <= limit:
            return value
        warn_background(
            f"mlflow-truncate:{what}:{key}",
            f"mlhooks: {what} {key!r} is {len(value)} characters long; MLflow keeps at most "
            f"{limit}, so it was truncated",
        )
        return value[:limit]


def _open_client(tracking_uri: str) -> MlflowClient:
    """MLflow's client of ``tracking_uri``; a new sqlite store starts from the migrated
    template (:mod:`.fresh_store`)."""
    fresh_store.start_from_template(tracking_uri)
    client: MlflowClient = mlf.MlflowClient(tracking_uri=tracking_uri)
    return client


def _row(run: Any) -> dict[str, Any]:
    info, data = run.info, run.data
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "parent_run_id": data.tags.get("mlflow.parentRunId"),
    }
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items()})
    return row


def _shown(text: str, limit: int = 120) -> str:
    """``text`` quoted for a message, cut at ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _status(status: str) -> int:
    return int(mlf.RunStatus.from_string(status))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _mlflow_key(key: str, what: str) -> str:
    """``key`` as MLflow accepts it (see :func:`_fixed_key`); a key that had to be
    fixed is told once (per site: again after the warnings were reset)."""
    fixed = _fixed_key(key)
    if fixed != key:
        warn_background(
            f"mlflow-key:{what}:{key}",
            f"mlhooks: MLflow does not accept the {what} key {key!r}; logged as {fixed!r}",
        )
    return fixed


@functools.lru_cache(maxsize=100_000)
def _fixed_key(key: str) -> str:
    """``key`` with allowed characters only, as a normalized path."""
    fixed = _KEY_ALLOWED.sub("_", key)
    return "/".join(part for part in fixed.split("/") if part not in ("", ".")) or "_"


def _chunks(
    metrics: list[Metric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Pieces within MLflow's limits: 1000 metrics, 100 params and 100 tags per call."""
    step = mlf.MAX_PARAMS_TAGS_PER_BATCH
    for start in range(0, max(len(params), len(tags)), step):
        yield [], params[start : start + step], tags[start : start + step]
    for start in range(0, len(metrics), mlf.MAX_METRICS_PER_BATCH):
        yield metrics[start : start + mlf.MAX_METRICS_PER_BATCH], [], []


_MLFLOW_TYPES = {"f": "double", "i": "long", "u": "long", "b": "boolean", "O": "string"}


def _dataset_input(info: DatasetInfo) -> DatasetInput:
    columns = [
        {"name": name, "type": _MLFLOW_TYPES.get(_dtype_kind(dtype), "string")}
        for name, dtype in (info.schema or {}).items()
    ]
    profile: dict[str, Any] = {
        "shape": list(info.shape) if info.shape else None,
        "kind": info.kind,
    }
    if info.shape:
        profile["num_rows"] = info.shape[0]
    dataset = mlf.Dataset(
        name=info.name,
        digest=info.digest,
        source_type="local" if info.source else "code",
        source=json.dumps({"uri": info.source} if info.source else {"tags": {}}),
        schema=json.dumps({"mlflow_colspec": columns}) if columns else None,
        profile=json.dumps(profile),
    )
    found: DatasetInput = mlf.DatasetInput(
        dataset, tags=[mlf.InputTag("mlflow.data.context", info.context)]
    )
    return found


def _dtype_kind(dtype: str) -> str:
    name = dtype.lower()
    if name.startswith(("float", "double")):
        return "f"
    if name.startswith(("int", "uint")):
        return "i"
    if name.startswith("bool"):
        return "b"
    return "O"
