"""What each new run costs the MLflow backend in queries (issue 13, repro 14), against a
real sqlite store: no search for a run made up here, one experiment lookup while
MLflow's settings stay the same."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks import RunInfo
from mlhooks.plugin import StartRun
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow import backend as backend_module
from mlhooks_mlflow.testing import mlflow_run_of


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
    assert len(lookups) == 2  # once per setting, not once per run
