"""The MLflow backend against a real sqlite tracking store, read back with MlflowClient;
what a team's server stores differently (runs, values, nested runs, datasets, artifacts,
models, search) also against one (``mlflow server`` on PostgreSQL, proxied artifacts)."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LinearRegression

import mlhooks
from mlhooks import MlhooksWarning
from mlhooks.plugin import LogBatch, StartRun
from mlhooks_mlflow import MlflowBackend, TrackingUriError
from mlhooks_mlflow.testing import also_on_team_server, mlflow_run_of, requires_mlflow3


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def test_it_is_the_default_backend_once_installed(client: MlflowClient) -> None:
    assert "mlflow" in mlhooks.list_plugins()
    with mlhooks.start_run("default") as run:
        mlhooks.log_metric("loss", 0.5)
    assert mlflow_run_of(client, run.run_id).data.metrics == {"loss": 0.5}


def test_experiments_open_in_the_model_training_view(client: MlflowClient) -> None:
    """MLflow 3's UI opens an experiment on the view its ``mlflow.experimentKind`` tag
    names: mlhooks marks the experiments it trains into (the default one too), but
    leaves a kind the user chose."""
    chosen = client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    with mlhooks.start_run("default"):
        mlhooks.log_metric("loss", 0.5)
    with mlhooks.start_run("named", experiment="tabular"):
        mlhooks.log_metric("loss", 0.5)
    with mlhooks.start_run("theirs", experiment="genai"):
        mlhooks.log_metric("loss", 0.5)
    kind = "mlflow.experimentKind"
    assert client.get_experiment("0").tags[kind] == "custom_model_development"
    assert client.get_experiment_by_name("tabular").tags[kind] == "custom_model_development"
    assert client.get_experiment(chosen).tags[kind] == "genai_development"


@also_on_team_server
def test_params_metrics_tags_and_description_land_exactly(client: MlflowClient) -> None:
    values = [0.5, float("nan"), 1e-300, -3.0]
    with mlhooks.start_run("exact", description="the first try", tags={"team": "ml"}) as run:
        mlhooks.log_params({"lr": 0.01, "layers": [64, 32]})
        for i, value in enumerate(values):
            mlhooks.log_metric("loss", value, step=10 * i, timestamp=1_700_000_000_000 + i)
        mlhooks.set_tag("stage", "dev")
    stored = mlflow_run_of(client, run.run_id)
    assert stored.info.run_name == "exact"
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.01", "layers": "[64, 32]"}
    assert stored.data.tags["team"] == "ml" and stored.data.tags["stage"] == "dev"
    assert stored.data.tags["mlflow.note.content"] == "the first try"
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert [(m.step, m.timestamp) for m in history] == [
        (10 * i, 1_700_000_000_000 + i) for i in range(len(values))
    ]
    got = [m.value for m in history]
    assert math.isnan(got[1]) and [got[0], got[2], got[3]] == [0.5, 1e-300, -3.0]


@also_on_team_server
def test_many_points_params_and_tags_are_chunked_within_limits(client: MlflowClient) -> None:
    with mlhooks.start_run("big") as run:
        mlhooks.log_params({f"p{i}": i for i in range(250)})
        mlhooks.set_tags({f"t{i}": i for i in range(150)})
        for step in range(5000):
            mlhooks.log_metrics({"a": step, "b": -step}, step=step)
    stored = mlflow_run_of(client, run.run_id)
    assert len(stored.data.params) == 250
    assert {f"t{i}" for i in range(150)} <= set(stored.data.tags)
    for key, sign in (("a", 1), ("b", -1)):
        history = client.get_metric_history(stored.info.run_id, key)
        assert sorted((m.step, m.value) for m in history) == [(s, sign * s) for s in range(5000)]


@also_on_team_server
def test_nested_runs_and_statuses(client: MlflowClient) -> None:
    with mlhooks.start_run("search") as parent:
        with mlhooks.start_run("good", nested=True) as good:
            pass
        with pytest.raises(ValueError), mlhooks.start_run("bad", nested=True) as bad:
            raise ValueError("candidate failed")
        with pytest.raises(KeyboardInterrupt), mlhooks.start_run("cut", nested=True) as cut:
            raise KeyboardInterrupt
    parent_id = mlflow_run_of(client, parent.run_id).info.run_id
    for handle, status in ((good, "FINISHED"), (bad, "FAILED"), (cut, "KILLED")):
        stored = mlflow_run_of(client, handle.run_id)
        assert stored.data.tags["mlflow.parentRunId"] == parent_id
        assert stored.info.status == status


@also_on_team_server
def test_a_continued_run_runs_again_but_a_replayed_start_changes_nothing(
    client: MlflowClient,
) -> None:
    with mlhooks.start_run("first") as first:
        mlhooks.log_metric("loss", 1.0, step=0)
    stored = mlflow_run_of(client, first.run_id)
    assert stored.info.status == "FINISHED"

    # The start of the first process, replayed from a spool after the run ended
    # (mlhooks sync): older than the end, it leaves the run FINISHED.
    backend = MlflowBackend()
    backend.apply(StartRun(first.info))
    assert client.get_run(stored.info.run_id).info.status == "FINISHED"

    with mlhooks.start_run("first", run_id=first.run_id):  # a resumed training
        assert mlflow_run_of(client, first.run_id).info.status == "RUNNING"
        mlhooks.log_metric("loss", 0.5, step=1)
    again = mlflow_run_of(client, first.run_id)
    assert again.info.run_id == stored.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(again.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5)]


@also_on_team_server
def test_a_run_opened_with_mlflow_start_run_is_logged_into(client: MlflowClient) -> None:
    with mlflow.start_run(run_name="theirs", description="opened by mlflow", tags={"x": "1"}):
        mlhooks.log_metric("loss", 0.25, step=3)
        mlhooks.log_param("lr", 0.1)
        mlhooks.flush()
        mlflow_id = mlflow.active_run().info.run_id
        assert client.get_run(mlflow_id).info.status == "RUNNING"  # not ended by us
    stored = client.get_run(mlflow_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.metrics == {"loss": 0.25}
    assert stored.data.params == {"lr": "0.1"}
    assert len(client.search_runs(["0"])) == 1


@pytest.mark.parametrize("how", ["set_experiment", "environment", "backend", "start_run"])
def test_the_experiment_comes_from_where_mlflow_users_set_it(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    backends = None
    experiment = None
    if how == "set_experiment":
        mlflow.set_experiment("churn")
    elif how == "environment":
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "churn")
    elif how == "backend":
        backends = [MlflowBackend(experiment="churn")]
    else:
        experiment = "churn"
    with mlhooks.start_run("located", backends=backends, experiment=experiment) as run:
        mlhooks.log_metric("loss", 1.0)
    stored = mlflow_run_of(client, run.run_id)
    assert client.get_experiment(stored.info.experiment_id).name == "churn"


@requires_mlflow3("refusing a file store (MLflow 2 writes to one)")
@pytest.mark.parametrize("uri", ["./mlruns", "file:///tmp/mlruns"])
def test_a_file_store_gets_a_clear_message(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingUriError, match="sqlite:///mlflow.db.*MLFLOW_ALLOW_FILE_STORE"):
        MlflowBackend(tracking_uri=uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    with pytest.raises(ValueError, match="file store"):
        mlhooks.autolog()
    assert mlhooks.active_run() is None


@also_on_team_server
def test_values_and_keys_mlflow_rejects_are_refused_at_the_door_or_fixed_with_one_warning(
    client: MlflowClient, lenient: None
) -> None:
    with mlhooks.start_run("odd") as run:
        with pytest.raises(ValueError, match="10000 characters, more than the 6000"):
            mlhooks.log_param("long", "x" * 10_000)
        with pytest.raises(ValueError, match="may only contain letters"):
            mlhooks.log_metric("acc@top5", 0.9)
    # What reaches the backend past the door (a spool written by an older mlhooks, a
    # third-party integration applying operations itself) is fixed there.
    stored = mlflow_run_of(client, run.run_id)
    batch = LogBatch(
        run.run_id,
        metrics=[("acc@top5", 0.9, 0, 1), ("acc@top5", 0.95, 1, 2)],
        params={"long": "x" * 10_000},
    )
    with pytest.warns(MlhooksWarning) as caught:
        MlflowBackend().apply(batch)
    stored = client.get_run(stored.info.run_id)
    assert stored.data.params["long"] == "x" * 6000
    assert [m.value for m in client.get_metric_history(stored.info.run_id, "acc_top5")] == [
        0.9,
        0.95,
    ]
    messages = [str(w.message) for w in caught]
    assert sum("truncated" in m for m in messages) == 1
    assert sum("'acc@top5'" in m for m in messages) == 1


@also_on_team_server
def test_datasets_appear_as_mlflow_inputs(client: MlflowClient) -> None:
    X = np.random.default_rng(0).normal(size=(100, 3))
    with mlhooks.start_run("data") as run:
        mlhooks.log_dataset(X, name="train_X")
        mlhooks.log_dataset(X[:10], name="test_X", context="eval")
    inputs = mlflow_run_of(client, run.run_id).inputs.dataset_inputs
    by_name = {i.dataset.name: i for i in inputs}
    assert by_name["train_X"].dataset.digest == mlhooks.fingerprint(X).digest
    assert {t.key: t.value for t in by_name["test_X"].tags} == {"mlflow.data.context": "eval"}
    assert '"num_rows": 100' in by_name["train_X"].dataset.profile


@also_on_team_server
def test_artifacts_land_in_the_run_artifact_store(client: MlflowClient, tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("hello")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a")
    with mlhooks.start_run("files") as run:
        mlhooks.log_artifact(tmp_path / "report.txt", artifact_path="reports")
        mlhooks.log_artifacts(tmp_path / "plots", artifact_path="plots")
    mlflow_id = mlflow_run_of(client, run.run_id).info.run_id
    assert [f.path for f in client.list_artifacts(mlflow_id, "reports")] == ["reports/report.txt"]
    assert [f.path for f in client.list_artifacts(mlflow_id, "plots")] == ["plots/a.txt"]


@also_on_team_server
def test_a_sklearn_model_loads_back_and_predicts_the_same(client: MlflowClient) -> None:
    X = np.random.default_rng(1).normal(size=(50, 4))
    y = X @ [1.0, 2.0, -1.0, 0.5]
    model = LinearRegression().fit(X, y)
    expected = model.predict(X)
    with mlhooks.start_run("model") as run:
        mlhooks.log_model(
            model,
            name="model",
            sample_input=X[:5],
            log_input_example=True,
            registered_model_name="linear",
        )
        model.fit(X, -y)  # a refit after logging must not change what was logged
    mlflow_id = mlflow_run_of(client, run.run_id).info.run_id
    loaded = mlflow.sklearn.load_model(f"runs:/{mlflow_id}/model")
    np.testing.assert_allclose(loaded.predict(X), expected)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model")
    np.testing.assert_allclose(pyfunc.predict(X), expected)
    assert pyfunc.metadata.signature is not None
    assert pyfunc.metadata.saved_input_example_info is not None
    versions = client.search_model_versions("name='linear'")
    assert [v.run_id for v in versions] == [mlflow_id]


@also_on_team_server
def test_search_runs_and_metric_history_through_mlflow(client: MlflowClient) -> None:
    for i, lr in enumerate([0.1, 0.01, 0.1]):
        with mlhooks.start_run(f"r{i}", experiment="search") as run:
            mlhooks.log_param("lr", lr)
            for step in range(3):
                mlhooks.log_metric("loss", i + step / 10, step=step)
    frame = mlhooks.search_runs(
        experiment="search", filter_string="params.lr = '0.1'", order_by=["metrics.loss DESC"]
    )
    assert list(frame["run_name"]) == ["r2", "r0"]
    assert list(frame["metrics.loss"]) == [2.2, 0.2]
    assert frame.loc[0, "tags.mlhooks.run_id"] == run.run_id
    history = mlhooks.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 2.1), (2, 2.2)]
    by_mlflow_id = mlhooks.get_metric_history(frame.loc[0, "run_id"], "loss")
    assert by_mlflow_id == history
    assert mlhooks.search_runs(experiment="missing").empty


def test_a_model_mlflow_cannot_save_is_set_aside_and_logging_goes_on(
    client: MlflowClient, lenient: None
) -> None:
    with pytest.warns(MlhooksWarning, match="rejected"):
        with mlhooks.start_run("bad model") as run:
            mlhooks.log_model({"not": "a module"}, name="model", flavor="pytorch")
            mlhooks.flush()
            mlhooks.log_metric("loss", 0.5)
        stored = mlflow_run_of(client, run.run_id)
    assert stored.data.metrics == {"loss": 0.5} and stored.info.status == "FINISHED"
