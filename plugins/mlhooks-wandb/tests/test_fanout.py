"""Several backends at once: MLflow (a real sqlite store) and W&B get the same runs, and
a W&B that fails never costs MLflow anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV

import mlhooks
from conftest import points_of, stored_run
from mlhooks.testing import wait_until
from mlhooks_mlflow.testing import mlflow_run_of
from mlhooks_wandb import TAGS_KEY, reading


def mlflow_points(client: MlflowClient, mlflow_run: Any) -> list[tuple[str, int, float]]:
    return sorted(
        (key, m.step, m.value)
        for key in mlflow_run.data.metrics
        for m in client.get_metric_history(mlflow_run.info.run_id, key)
    )


def assert_same_in_both(client: MlflowClient, wandb_dir: Path, run_id: str) -> None:
    from_mlflow = mlflow_run_of(client, run_id)
    from_wandb = stored_run(wandb_dir, run_id)
    assert from_mlflow.info.run_name == from_wandb.name
    assert from_mlflow.info.status == "FINISHED" and from_wandb.exit_code == 0
    params = {k: str(v) for k, v in from_wandb.config.items() if k != TAGS_KEY}
    assert params == from_mlflow.data.params
    tags = from_wandb.config.get(TAGS_KEY, {})
    assert tags.items() <= from_mlflow.data.tags.items()
    assert points_of(from_wandb) == mlflow_points(client, from_mlflow)


def test_mlhooks_backends_mlflow_and_wandb_store_the_same_runs(
    tracking_uri: str, wandb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_BACKENDS", "mlflow,wandb")
    mlhooks.autolog()  # nothing in the training code names a backend
    X, y = load_diabetes(return_X_y=True)
    GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2).fit(X, y)
    with mlhooks.start_run("manual") as manual:
        mlhooks.log_params({"lr": 0.1, "epochs": 20})
        mlhooks.set_tags({"team": "vision"})
        for step in range(20):
            mlhooks.log_metrics({"loss": 1 / (step + 1), "acc": step / 20}, step=step)
    assert [d.name for d in mlhooks.describe_backends()] == ["mlflow", "wandb"]

    client = MlflowClient(tracking_uri)
    assert mlhooks.flush(60)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 4  # the search, its 2 candidates, the manual run
    run_ids = [run.data.tags["mlhooks.run_id"] for run in runs]
    assert manual.run_id in run_ids
    for run_id in run_ids:
        assert_same_in_both(client, wandb_dir, run_id)
    assert len(list((wandb_dir / "wandb").glob("offline-run-*"))) == 4
    # The candidates are children of the search in both.
    parent = next(run for run in runs if run.info.run_name == "GridSearchCV")
    parent_id = parent.data.tags["mlhooks.run_id"]
    for run in runs:
        if run is not parent and run.data.tags["mlhooks.run_id"] != manual.run_id:
            assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
            stored = stored_run(wandb_dir, run.data.tags["mlhooks.run_id"])
            assert stored.group == f"GridSearchCV-{parent_id[:8]}"


def log_a_run(name: str, backends: Any) -> str:
    with mlhooks.start_run(name, backends=backends) as run:
        mlhooks.log_params({"lr": 0.5})
        for step in range(300):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
    return run.run_id


def assert_complete_in_mlflow(tracking_uri: str, run_id: str) -> None:
    client = MlflowClient(tracking_uri)
    from_mlflow = mlflow_run_of(client, run_id)
    assert from_mlflow.info.status == "FINISHED" and from_mlflow.data.params == {"lr": "0.5"}
    history = client.get_metric_history(from_mlflow.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1 / (s + 1)) for s in range(300)]


def test_a_wandb_folder_that_cannot_be_written_costs_mlflow_nothing_and_is_caught_up(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "1")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where W&B's folder should be")
    broken = mlhooks.backend("wandb", dir=blocker / "wb")
    with pytest.warns(mlhooks.MlhooksWarning, match="is failing"):
        run_id = log_a_run("blocked", ["mlflow", broken])
        assert mlhooks.flush(60)
    assert_complete_in_mlflow(tracking_uri, run_id)
    # W&B's share waits in a spool, with what rebuilds the backend for `mlhooks sync`.
    (spool,) = (tmp_path / "mlhooks-runs" / ".spool").glob("wandb-*.spool.jsonl")
    header = json.loads(spool.read_text().splitlines()[0])
    assert header["backend"] == "wandb" and header["options"]["dir"] == str(blocker / "wb")

    blocker.unlink()  # W&B can write now: the lane replays its spool by itself
    wait_until(lambda: reading.run_dirs(blocker / "wb", run_id), timeout=120)
    stored = reading.load_run(blocker / "wb", run_id, wait=120)
    assert stored.name == "blocked" and stored.exit_code == 0 and stored.config == {"lr": 0.5}
    assert stored.points("loss") == [(s, 1 / (s + 1)) for s in range(300)]


def test_a_wandb_init_that_raises_costs_mlflow_nothing(tracking_uri: str, tmp_path: Path) -> None:
    refused = mlhooks.backend("wandb", project="bad/project")  # W&B refuses the name
    with pytest.warns(mlhooks.MlhooksWarning, match="rejected an operation"):
        run_id = log_a_run("refused", ["mlflow", refused])
        assert mlhooks.flush(60)
    assert_complete_in_mlflow(tracking_uri, run_id)
    rejected = list((tmp_path / "mlhooks-runs" / ".spool" / "rejected").glob("wandb-*"))
    assert rejected  # set aside with the reason, never blocking what follows
    kept = [json.loads(line) for line in rejected[0].read_text().splitlines()[1:]]
    assert "Invalid project name" in kept[0]["reason"]
