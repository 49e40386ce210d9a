"""What each new run costs the MLflow backend in queries (issue 13, repro 14) and in
write transactions (issue 15), against a real sqlite store: no search for a run made up
here, one experiment lookup while MLflow's settings stay the same, an autologged fit
stored in 9 transactions."""

from __future__ import annotations

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
from mlhooks.plugin import StartRun, setting
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow import backend as backend_module
from mlhooks_mlflow.testing import WriteTransactions, mlflow_run_of, stored_models


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


def test_an_autologged_fit_is_stored_in_nine_write_transactions(
    client: MlflowClient, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small fit, its own run with its model, into a sqlite store: 9 write
    transactions (the run created with every tag, its params, its two datasets in one,
    its metrics, the logged model's four, its end), and every value lands: what the
    in-memory store beside it got, MLflow has."""
    # The fit's operations reach the writer together (at the flush), as they do when
    # fits follow each other; the journal's own rounds could cut a run anywhere.
    monkeypatch.setenv("MLHOOKS_JOURNAL_INTERVAL", "600")
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
    assert len(writes) == 9, writes.transactions
    assert writes.transactions[0] == ("INSERT runs", "INSERT tags")  # create_run

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
