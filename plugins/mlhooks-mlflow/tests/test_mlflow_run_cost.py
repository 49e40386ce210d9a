"""What each new run costs the MLflow backend in queries (issue 13, repro 14) and in
write transactions (issue 15), against a real sqlite store: no search for a run made up
here, one experiment lookup while MLflow's settings stay the same, an autologged fit
stored in 5 transactions, its logged model and its end in one of them."""

from __future__ import annotations

import pickle
import sqlite3
import uuid
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import Ridge

import mlhooks
from mlhooks import RunInfo
from mlhooks.backends.memory import MemoryBackend
from mlhooks.capture import context
from mlhooks.delivery.batching import Batcher
from mlhooks.plugin import Bundle, EndRun, LogBatch, LogModel, ModelArtifact, StartRun, setting
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow import backend as backend_module
from mlhooks_mlflow.testing import (
    WriteTransactions,
    mlflow_run_of,
    requires_mlflow3,
    stored_models,
)


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def runs_tagged(client: MlflowClient, run_id: str) -> list[Any]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, f"tags.`mlhooks.run_id` = '{run_id}'"))


def test_a_new_run_is_created_without_a_search_and_a_retry_finds_it(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run this process made up cannot be in the store: no search before creating
    it. A start tried again (the answer to the first was lost) searches, and finds
    the run the first attempt made."""
    backend = MlflowBackend()
    searches: list[str] = []
    find = backend._find
    monkeypatch.setattr(backend, "_find", lambda run_id: searches.append(run_id) or find(run_id))
    create_run = backend.client.create_run
    lost: list[bool] = []

    def answer_lost_once(*args: Any, **kwargs: Any) -> Any:
        created = create_run(*args, **kwargs)
        if not lost:
            lost.append(True)
            raise ConnectionError("the answer was lost")
        return created

    run = RunInfo(run_id=uuid.uuid4().hex, name="fresh", new=True)
    monkeypatch.setattr(backend.client, "create_run", answer_lost_once)
    with pytest.raises(ConnectionError):
        backend.apply(StartRun(run))
    assert searches == []
    backend.apply(StartRun(run))  # the retry
    assert searches == [run.run_id]
    assert len(runs_tagged(client, run.run_id)) == 1

    replayed = RunInfo(run_id=uuid.uuid4().hex, name="from a spool")  # new=False
    backend.apply(StartRun(replayed))
    assert searches[-1] == replayed.run_id
    assert len(runs_tagged(client, replayed.run_id)) == 1


def test_the_experiment_mlflow_settings_choose_is_looked_up_once_while_they_stay(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str | None] = []
    real = backend_module.active_experiment_id
    monkeypatch.setattr(
        backend_module, "active_experiment_id", lambda: lookups.append(None) or real()
    )
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "churn")
    ids = []
    for name in ("a", "b", "c"):
        with mlhooks.start_run(name) as run:
            mlhooks.log_metric("loss", 1.0)
        ids.append(run.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "retention")
    with mlhooks.start_run("d") as moved:
        mlhooks.log_metric("loss", 1.0)
    names = [
        client.get_experiment(mlflow_run_of(client, run_id).info.experiment_id).name
        for run_id in [*ids, moved.run_id]
    ]
    assert names == ["churn", "churn", "churn", "retention"]
    if not setting("MLHOOKS_SERVICE"):  # else the writer service looks them up (see below)
        assert len(lookups) == 2  # once per setting, not once per run


def test_the_writer_service_looks_the_experiment_of_pinned_settings_up_once_too(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer service rebuilds the backend from its spec, in a process whose MLflow
    settings are not the program's: each start carries the settings pinned as the run
    started, and the experiment they name is looked up once per name."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "churn")
    training = MlflowBackend()  # follows MLflow's settings
    service = MlflowBackend(**training.spec())
    lookups: list[str] = []
    real = service.client.get_experiment_by_name
    monkeypatch.setattr(
        service.client, "get_experiment_by_name", lambda name: lookups.append(name) or real(name)
    )
    ids = {}
    for name, chosen in [("a", "churn"), ("b", "churn"), ("c", "churn"), ("d", "retention")]:
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", chosen)
        run = RunInfo(run_id=uuid.uuid4().hex, name=name, new=True)
        start = StartRun(run, training.pin(run))
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "the service's own")
        service.apply(start)
        ids[name] = service.mlflow_run_id(run.run_id)
    names = {
        name: client.get_experiment(client.get_run(mlflow_id).info.experiment_id).name
        for name, mlflow_id in ids.items()
    }
    assert names == {"a": "churn", "b": "churn", "c": "churn", "d": "retention"}
    assert lookups == ["churn", "retention"]


@requires_mlflow3("the logged model (in one of the fit's five write transactions)")
def test_an_autologged_fit_is_stored_in_five_write_transactions(
    client: MlflowClient, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small fit, its own run with its model, into a sqlite store: 5 write
    transactions (the run created with every tag, its params, its two datasets in one,
    its metrics, its logged model whole with the run's end in one), and every value
    lands: what
    the in-memory store beside it got, MLflow has, and the logged model is READY with
    the run as its source and output, its params, the run's metrics linked with their
    dataset, its id in its MLmodel, loadable."""
    # The fit's operations reach the writer together (at the flush), as they do when
    # fits follow each other; the journal's own rounds could cut a run anywhere.
    monkeypatch.setenv("MLHOOKS_JOURNAL_INTERVAL", "600")
    # The store's transactions are counted in this process: the backend writes here
    # (the writer service runs the same backend code).
    monkeypatch.setenv("MLHOOKS_SERVICE", "0")
    # The run context is captured once and reused, as in a loop of fits (a capture
    # under way could report its tags after the fit's metrics, a write of their own).
    monkeypatch.setattr(context, "GIT_REUSE_SECONDS", 600.0)
    reference = MemoryBackend()
    mlhooks.autolog(backends=["mlflow", reference])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ np.arange(1.0, 5.0)
    Ridge().fit(X, y)  # the experiment's first run; the run context is reused after it
    assert mlhooks.flush(60)
    with WriteTransactions(tracking_uri) as writes:
        model = Ridge(alpha=0.5).fit(X, y)
        assert mlhooks.flush(60)
    assert len(writes) == 5, writes.transactions
    assert writes.transactions[0] == ("INSERT runs", "INSERT tags")  # create_run
    assert writes.transactions[-1] == (
        "INSERT inputs",  # the run's output
        "INSERT logged_model_metrics",
        "INSERT logged_model_params",
        "INSERT logged_model_tags",
        "INSERT logged_models",
        "UPDATE runs",  # its end
    )

    [reported] = [r for r in reference.runs.values() if r.params.get("alpha") == "0.5"]
    stored = mlflow_run_of(client, reported.info.run_id)
    mlflow_id = stored.info.run_id
    assert stored.info.status == "FINISHED"
    assert len(reported.params) >= 8 and stored.data.params == reported.params
    assert any(key.startswith("mlhooks.context") for key in reported.tags)
    assert reported.tags.items() <= stored.data.tags.items()
    assert {
        key: [(m.value, m.step) for m in client.get_metric_history(mlflow_id, key)]
        for key in reported.metrics
    } == {key: [(m.value, m.step) for m in points] for key, points in reported.metrics.items()}
    inputs = {(i.dataset.name, i.dataset.digest) for i in stored.inputs.dataset_inputs}
    assert len(inputs) == 2 and inputs == {(d.name, d.digest) for d in reported.datasets}
    uri = stored_models(client, mlflow_id)["model"]
    assert uri.startswith("models:/")
    assert np.allclose(mlflow.sklearn.load_model(uri).predict(X), model.predict(X))
    assert np.allclose(mlflow.pyfunc.load_model(uri).predict(X), model.predict(X))
    logged = client.get_logged_model(uri.removeprefix("models:/"))
    assert str(logged.status) == "READY" and logged.source_run_id == mlflow_id
    assert [o.model_id for o in stored.outputs.model_outputs] == [logged.model_id]
    assert logged.params == reported.params
    assert logged.tags["mlhooks.run_id"] == reported.info.run_id
    linked = {m.key: (m.value, m.run_id, m.dataset_digest) for m in logged.metrics}
    train = next(d.digest for d in reported.datasets if d.context == "train")
    assert linked == {
        key: (points[-1].value, mlflow_id, train if key.startswith("train") else None)
        for key, points in reported.metrics.items()
    }
    saved = mlflow.models.get_model_info(uri)
    assert saved.model_uuid == logged.model_id and saved.model_id == logged.model_id


def a_run_with_a_score() -> tuple[MlflowBackend, RunInfo]:
    """A new MLflow backend, and a run it started with one metric point."""
    backend = MlflowBackend()
    run = RunInfo(run_id=uuid.uuid4().hex, name="fit", new=True)
    backend.apply(StartRun(run))
    backend.apply(LogBatch(run.run_id, metrics=[("training_r2_score", 0.9, 0, 1)]))
    return backend, run


@requires_mlflow3("logged models")
def test_a_logged_model_whose_one_transaction_fails_is_stored_once_by_the_retry(
    client: MlflowClient, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away as the model's one transaction is written (its files are
    in, it is not): the write is worth retrying, and the retry stores the model once,
    under the id chosen first, READY, loadable, linked to the run's metrics."""
    backend, run = a_run_with_a_score()
    X = np.arange(8.0).reshape(4, 2)
    fitted = Ridge().fit(X, X @ [1.0, 2.0])
    op = LogModel(run.run_id, ModelArtifact("model", "sklearn", pickle.dumps(fitted)))
    from mlhooks_mlflow import sql_models  # MLflow 3's entities

    insert = sql_models.SqlModels.insert
    tried: list[str] = []

    def away_once(self: Any, model_id: str, *args: Any) -> Any:
        tried.append(model_id)
        if len(tried) == 1:
            raise ConnectionError("the database went away")
        return insert(self, model_id, *args)

    monkeypatch.setattr(sql_models.SqlModels, "insert", away_once)
    with pytest.raises(ConnectionError):
        backend.apply(op)
    assert backend.is_retryable(ConnectionError())
    backend.apply(op)  # the retry

    mlflow_id = backend.mlflow_run_id(run.run_id)
    (model,) = client.search_logged_models(["0"], filter_string=f"source_run_id = '{mlflow_id}'")
    assert tried == [model.model_id, model.model_id]
    assert str(model.status) == "READY"
    assert [(m.key, m.value) for m in model.metrics] == [("training_r2_score", 0.9)]
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert np.allclose(loaded.predict(X), fitted.predict(X))


@requires_mlflow3("logged models")
def test_tables_that_refuse_the_one_transaction_leave_the_model_to_mlflows_calls(
    client: MlflowClient, tracking_uri: str
) -> None:
    """Tables of another MLflow than the one-transaction insert was written for (here a
    trigger refuses a model inserted READY at once, which MLflow's own calls never do):
    the write is worth retrying, and the retry goes through MLflow's public calls, which
    store the model once, READY, loadable, linked to the run's metrics."""
    from mlflow.entities import LoggedModelStatus

    from mlhooks.plugin import BackendError

    backend, run = a_run_with_a_score()
    with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as db:
        db.execute(
            "CREATE TRIGGER another_schema BEFORE INSERT ON logged_models "
            f"WHEN NEW.status = {LoggedModelStatus.READY.to_int()} "
            "BEGIN SELECT RAISE(ABORT, 'not the tables this insert knows'); END"
        )
    X = np.arange(8.0).reshape(4, 2)
    fitted = Ridge().fit(X, X @ [1.0, 2.0])
    op = LogModel(run.run_id, ModelArtifact("model", "sklearn", pickle.dumps(fitted)))
    with pytest.raises(BackendError) as refused:
        backend.apply(op)
    assert backend.is_retryable(refused.value)
    backend.apply(op)  # the retry, through MLflow's calls

    mlflow_id = backend.mlflow_run_id(run.run_id)
    (model,) = client.search_logged_models(["0"], filter_string=f"source_run_id = '{mlflow_id}'")
    assert str(model.status) == "READY"
    assert [(m.key, m.value) for m in model.metrics] == [("training_r2_score", 0.9)]
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert np.allclose(loaded.predict(X), fitted.predict(X))


@requires_mlflow3("logged models")
def test_a_bundle_stored_again_after_its_model_was_stored_stores_it_once(
    client: MlflowClient, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit's model (to be registered) and its run's end reach the writer together,
    as one bundle, stored in one transaction; then the registry does not answer. The
    writer stores the bundle again: the model, stored already, is taken up by its id
    and registered (not stored twice), and the run ends once."""
    from mlhooks_mlflow import registry, sql_models  # MLflow 3's entities

    backend, run = a_run_with_a_score()
    X = np.arange(8.0).reshape(4, 2)
    fitted = Ridge().fit(X, X @ [1.0, 2.0])
    artifact = ModelArtifact("model", "sklearn", pickle.dumps(fitted))
    artifact.metadata["registered_model_name"] = "ridge"
    bundle = [LogModel(run.run_id, artifact), EndRun(run.run_id, "FINISHED", 2)]
    [(ops, _)] = list(Batcher.for_backend(backend).segments(bundle))
    assert [type(op) for op in ops] == [Bundle]
    inserts: list[object] = []
    insert, register = sql_models.SqlModels.insert, registry.register

    def counted(self: Any, *args: Any) -> Any:
        inserts.append(args[-1])  # the run's end, inserted with the model
        return insert(self, *args)

    outage = [ConnectionError("the registry went away")]

    def away_once(*args: Any, **kwargs: Any) -> str:
        if outage:
            raise outage.pop()
        return register(*args, **kwargs)

    monkeypatch.setattr(sql_models.SqlModels, "insert", counted)
    monkeypatch.setattr(registry, "register", away_once)
    with pytest.raises(ConnectionError):
        backend.apply(ops[0])
    assert backend.is_retryable(ConnectionError())
    backend.apply(ops[0])  # the writer's retry

    assert inserts == [("FINISHED", 2)]  # one transaction, not made again
    mlflow_id = backend.mlflow_run_id(run.run_id)
    stored = client.get_run(mlflow_id)
    assert stored.info.status == "FINISHED" and stored.info.end_time == 2
    (model,) = client.search_logged_models(["0"], filter_string=f"source_run_id = '{mlflow_id}'")
    assert str(model.status) == "READY"
    assert [o.model_id for o in stored.outputs.model_outputs] == [model.model_id]
    (version,) = client.search_model_versions("name = 'ridge'")  # registered once
    assert version.source == f"models:/{model.model_id}"
    assert client.get_logged_model(model.model_id).tags["mlhooks.model_version"] == "ridge/1"
