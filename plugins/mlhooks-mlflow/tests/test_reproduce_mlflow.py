"""Run context, redaction, system metrics, comparison and the `mlhooks` command on a
real sqlite MLflow store (and a server that does not answer)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks.capture import system_metrics
from mlhooks.testing import train_by_hand
from mlhooks_mlflow.testing import also_on_team_server, free_port, mlflow_run_of


def mlhooks_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlhooks", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def two_runs() -> dict[str, Any]:
    made = {}
    for name, eta0 in (("slow", 0.001), ("fast", 0.01)):
        run_id, logged = train_by_hand(name, eta0)
        made[name] = {"id": run_id, "logged": logged}
    client = MlflowClient()
    for run in made.values():
        run["mlflow_id"] = mlflow_run_of(client, run["id"]).info.run_id
    return made


def test_context_tags_and_artifact_in_mlflow() -> None:
    with mlhooks.start_run("ctx") as run:
        mlhooks.log_params({"api_key": "sk-123", "lr": 0.1})
        mlhooks.set_tag("source_url", "https://bob:pw@example.com/data.csv")
    client = MlflowClient()
    stored = mlflow_run_of(client, run.run_id)
    tags = stored.data.tags
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"]
    assert tags["mlhooks.context.version.mlhooks"] == mlhooks.__version__
    assert tags["mlhooks.context.version.mlhooks-mlflow"]
    if shutil.which("git") and tags.get("mlflow.source.git.commit"):
        entry_point = Path(tags["mlflow.source.name"]).parent  # the tests run in tmp_path
        head = subprocess.run(
            ["git", "-C", str(entry_point), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert tags["mlflow.source.git.commit"] == head
    assert stored.data.params == {"api_key": "***", "lr": "0.1"}
    assert tags["source_url"] == "https://***@example.com/data.csv"
    names = [a.path for a in client.list_artifacts(stored.info.run_id, "mlhooks")]
    assert "mlhooks/context.json" in names
    folder = client.download_artifacts(stored.info.run_id, "mlhooks/context.json")
    document = json.loads(Path(folder).read_text())
    assert any(line.startswith("mlflow==") for line in document["requirements"])


def test_system_metrics_reach_mlflow_with_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_SYSTEM_METRICS_INTERVAL", "0.5")
    with mlhooks.start_run("sampled", log_system_metrics=True) as run:
        time.sleep(3)
    client = MlflowClient()
    stored = mlflow_run_of(client, run.run_id)
    history = client.get_metric_history(stored.info.run_id, "system/cpu_utilization_percentage")
    steps = sorted(m.step for m in history)
    assert len(steps) >= 3 and steps == list(range(len(steps)))


def test_mlflow_samples_its_own_runs_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_SYSTEM_METRICS_INTERVAL", "0.2")
    mlhooks.autolog(log_system_metrics=True)
    with mlflow.start_run(log_system_metrics=True) as outside:
        mlhooks.log_metric("loss", 1.0)  # adopts the MLflow run
        time.sleep(1)
        assert system_metrics.active_samplers() == []  # MLflow samples it, not mlhooks
    mlhooks.flush()
    tags = MlflowClient().get_run(outside.info.run_id).data.tags
    assert "mlhooks.context.python" in tags  # the adopted run got the context


@also_on_team_server
def test_compare_and_plot_on_mlflow(two_runs: dict[str, Any]) -> None:
    ids = [two_runs["slow"]["id"], two_runs["fast"]["mlflow_id"]]  # either id works
    table = mlhooks.compare_runs(ids)
    assert list(table["run_name"]) == ["slow", "fast"]
    assert list(table["params.eta0"]) == ["0.001", "0.01"]
    for i, name in enumerate(["slow", "fast"]):
        logged = two_runs[name]["logged"]
        assert table["val_rmse (final)"][i] == pytest.approx(logged["val_rmse"][-1])
        assert table["val_rmse (best)"][i] == pytest.approx(min(logged["val_rmse"]))
        assert table["val_r2 (best)"][i] == pytest.approx(max(logged["val_r2"]))
    by_filter = mlhooks.compare_runs("params.eta0 = '0.01'")
    assert list(by_filter["run_name"]) == ["fast"]
    figure = mlhooks.plot_metric(mlhooks.search_runs(order_by=["run_name ASC"]), "val_r2")
    (axes,) = figure.axes
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == [
        f"fast ({two_runs['fast']['mlflow_id'][:8]})",
        f"slow ({two_runs['slow']['mlflow_id'][:8]})",
    ]
    assert list(axes.get_lines()[1].get_ydata()) == pytest.approx(
        two_runs["slow"]["logged"]["val_r2"]
    )


def test_every_command_on_the_sqlite_store(two_runs: dict[str, Any], tmp_path: Path) -> None:
    listed = mlhooks_cli("runs", "--format", "json", "--order-by", "metrics.val_rmse ASC")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    finals = {n: two_runs[n]["logged"]["val_rmse"][-1] for n in two_runs}
    assert [r["run_name"] for r in records] == sorted(finals, key=finals.get)
    table = mlhooks_cli("runs")
    assert table.returncode == 0 and "2 runs" in table.stdout and "slow" in table.stdout

    shown = mlhooks_cli("show", two_runs["fast"]["id"])  # the mlhooks id
    assert shown.returncode == 0, shown.stderr
    assert two_runs["fast"]["mlflow_id"] in shown.stdout and "eta0" in shown.stdout
    assert "mlflow.source.name" in shown.stdout
    assert mlhooks_cli("show", "nope").returncode == 1

    report = tmp_path / "report.html"
    compared = mlhooks_cli("compare", "slow", "fast", "-m", "val_r2", "--html", str(report))
    assert compared.returncode == 0, compared.stderr
    assert "val_r2 (best)" in compared.stdout and "val_rmse" not in compared.stdout
    assert report.read_text().count("data:image/svg+xml;base64,") == 1

    checked = mlhooks_cli("doctor", "--format", "json")
    assert checked.returncode == 0, checked.stderr
    (backend,) = [b for b in json.loads(checked.stdout)["backends"] if b["name"] == "mlflow"]
    assert backend["default"] and backend["answers"] is True
    assert backend["where"] == f"MLflow at {os.environ['MLFLOW_TRACKING_URI']}"
    assert {p["name"]: p["loaded"] for p in json.loads(checked.stdout)["plugins"]}["mlflow"]

    assert mlhooks_cli("sync").returncode == 0


def test_doctor_says_when_the_server_does_not_answer() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    checked = mlhooks_cli("doctor", "--no-probe", MLFLOW_TRACKING_URI=down)
    assert checked.returncode == 1
    assert "NO:" in checked.stdout and down in checked.stdout
