"""The MLflow backend against a real `mlflow server` on 127.0.0.1: writes, an outage in
the middle of a run, and `mlhooks sync` after a process died with the server down; the
outage and `sync` also against a team's server (``mlflow server`` on PostgreSQL: the
session's, stopped and started again, rather than one more server per test)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

import mlhooks
from mlhooks import MlhooksWarning
from mlhooks.testing import wait_until
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow.testing import MlflowServer, also_on_team_server, mlflow_run_of


def test_runs_metrics_and_models_through_a_server(mlflow_server: MlflowServer) -> None:
    client = MlflowClient(mlflow_server.uri)
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    backend = MlflowBackend(tracking_uri=mlflow_server.uri, experiment="served")
    with mlhooks.start_run("served", backends=[backend], tags={"via": "server"}) as run:
        mlhooks.log_params({"C": 1.0})
        for step in range(300):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        mlhooks.log_dataset(X, name="X")
        mlhooks.log_model(model, name="model", sample_input=X[:3])
        with mlhooks.start_run("child", nested=True) as child:
            mlhooks.log_metric("x", 1.0)
    stored = mlflow_run_of(client, run.run_id)
    assert stored.info.status == "FINISHED" and stored.data.params == {"C": "1.0"}
    assert client.get_experiment(stored.info.experiment_id).name == "served"
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))
    assert stored.inputs.dataset_inputs[0].dataset.digest == mlhooks.fingerprint(X).digest
    assert mlflow_run_of(client, child.run_id).data.tags["mlflow.parentRunId"] == stored.info.run_id
    mlflow.set_tracking_uri(mlflow_server.uri)  # runs:/ URIs resolve through it
    loaded = mlflow.sklearn.load_model(f"runs:/{stored.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.fixture
def restartable_server(
    request: pytest.FixtureRequest,
    mlflow_store: str,
    new_mlflow_server: Callable[[], MlflowServer],
) -> Iterator[MlflowServer]:
    """A running server the test may stop and start again: one of its own, or on a team
    server the session's (emptied for the test), running again after the test."""
    if mlflow_store != "team":
        server = new_mlflow_server()
        server.start()
        yield server
        return
    team: MlflowServer = request.getfixturevalue("team_server")
    yield team
    if team.process is None:
        team.start()


@pytest.fixture
def server_down(
    request: pytest.FixtureRequest,
    mlflow_store: str,
    new_mlflow_server: Callable[[], MlflowServer],
) -> Iterator[MlflowServer]:
    """A server that does not answer until the test starts it: one of its own, or on a
    team server the session's (emptied for the test), stopped, running after the test."""
    if mlflow_store != "team":
        yield new_mlflow_server()  # its port stays closed until start()
        return
    team: MlflowServer = request.getfixturevalue("team_server")
    team.stop()
    yield team
    if team.process is None:
        team.start()


@also_on_team_server
def test_an_outage_mid_run_loses_nothing_and_stores_nothing_twice(
    restartable_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    lenient: None,
    record_property: object,
) -> None:
    server = restartable_server
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0.05,0.1")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "0.5")
    client = MlflowClient(server.uri)
    backend = MlflowBackend(tracking_uri=server.uri)
    restarted = threading.Thread(target=server.start)
    longest = 0.0
    with pytest.warns(MlhooksWarning, match="spooling"):
        with mlhooks.start_run("outage", backends=[backend]) as run:
            for step in range(10_000):
                if step == 2_000:
                    assert mlhooks.flush(60)
                    server.stop()  # the tracking server dies mid-run
                if step == 6_000:
                    restarted.start()  # and comes back while training goes on
                started = time.perf_counter()
                mlhooks.log_metric("loss", step / 10_000, step=step)
                longest = max(longest, time.perf_counter() - started)
                time.sleep(0.0005)  # a training step
        restarted.join()
        mlflow_id_holder: list[str] = []

        def all_stored() -> bool:
            try:
                if not mlflow_id_holder:
                    mlflow_id_holder.append(mlflow_run_of(client, run.run_id).info.run_id)
                stored = client.get_run(mlflow_id_holder[0])
                return (
                    stored.info.status == "FINISHED"
                    and len(client.get_metric_history(mlflow_id_holder[0], "loss")) >= 10_000
                )
            except Exception:
                return False

        wait_until(all_stored, timeout=120)
    history = client.get_metric_history(mlflow_id_holder[0], "loss")
    assert sorted(m.step for m in history) == list(range(10_000))  # each exactly once
    assert all(m.value == m.step / 10_000 for m in history)
    record_property("longest_log_metric_stall_s", longest)
    print(f"\nlongest log_metric call during the outage: {longest * 1000:.2f} ms")


def offline_env(local_dir: Path, server: MlflowServer) -> dict[str, str]:
    """The environment of a training process whose server is down: it spools fast."""
    return {
        **os.environ,
        "MLHOOKS_LOCAL_DIR": str(local_dir),
        "MLHOOKS_RETRY_DELAYS": "0.01",
        "MLHOOKS_FLUSH_TIMEOUT": "5",
        "MLHOOKS_EXIT_TIMEOUT": "5",
        "MLHOOKS_STRICT": "0",
        "MLFLOW_TRACKING_URI": server.uri,
    }


def train_offline(code: str, env: dict[str, str]) -> str:
    """Run ``code`` (it prints its run's id last) in a fresh process; the run id."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@also_on_team_server
def test_a_process_killed_while_the_server_is_down_is_synced_later(
    tmp_path: Path, lenient: None, server_down: MlflowServer
) -> None:
    server = server_down
    local_dir = tmp_path / "mlhooks-runs"
    env = offline_env(local_dir, server)
    run_id = train_offline(
        """
        import warnings, mlhooks
        warnings.simplefilter("ignore")
        with mlhooks.start_run("offline", tags={"k": "v"}) as run:
            mlhooks.log_param("lr", 0.1)
            for step in range(2000):
                mlhooks.log_metric("loss", step / 7, step=step)
        print(run.run_id)
        """,
        env,
    )

    server.start()
    sync = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(local_dir)]
    for _ in range(2):  # the second sync finds nothing left and adds nothing
        done = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    client = MlflowClient(server.uri)
    stored = mlflow_run_of(client, run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.1"} and stored.data.tags["k"] == "v"
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2000))


@pytest.mark.parametrize("chosen_by", ["MLFLOW_EXPERIMENT_NAME", "mlflow.set_experiment"])
def test_a_synced_run_lands_in_the_experiment_its_process_chose(
    tmp_path: Path, lenient: None, new_mlflow_server: Callable[[], MlflowServer], chosen_by: str
) -> None:
    """The spool keeps the experiment MLflow's settings selected when the run started,
    so ``mlhooks sync`` from a shell without those settings puts it there (issue 13)."""
    server = new_mlflow_server()
    server.start()
    experiment_id = MlflowClient(server.uri).create_experiment("churn")
    server.stop()  # down for the whole training process
    local_dir = tmp_path / "mlhooks-runs"
    env = offline_env(local_dir, server)
    choose = ""
    if chosen_by == "MLFLOW_EXPERIMENT_NAME":
        env["MLFLOW_EXPERIMENT_NAME"] = "churn"
    else:  # set_experiment by id: no server call
        choose = f"mlflow.tracking.fluent._active_experiment_id = {experiment_id!r}"
    run_id = train_offline(
        f"""
        import warnings, mlflow, mlhooks
        warnings.simplefilter("ignore")
        {choose}
        with mlhooks.start_run("offline") as run:
            mlhooks.log_metric("loss", 0.5)
        print(run.run_id)
        """,
        env,
    )
    server.start()
    env.pop("MLFLOW_EXPERIMENT_NAME", None)  # the shell that syncs does not say it
    sync = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(local_dir)]
    done = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = mlflow_run_of(MlflowClient(server.uri), run_id)
    assert stored.info.experiment_id == experiment_id
