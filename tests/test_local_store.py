"""The embedded local store: its files, reading them back, and surviving torn writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlhooks
from mlhooks import RunStatus
from mlhooks.backends import EndRun, LogBatch, LogDataset, StartRun
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.core.types import DatasetInfo, RunInfo


def test_a_run_is_a_folder_of_plain_files(tmp_path: Path) -> None:
    with mlhooks.start_run("files", backends=[LocalBackend(tmp_path)], tags={"a": "b"}) as run:
        mlhooks.log_params({"lr": 0.1})
        mlhooks.log_metric("loss", 0.5, step=2, timestamp=1234)
        mlhooks.set_tag("stage", "dev")
    folder = tmp_path / run.run_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "meta.json",
        "metrics.tsv",
        "params.jsonl",
        "tags.jsonl",
    ]
    assert (folder / "metrics.tsv").read_text() == "loss\t2\t1234\t0.5\n"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["name"] == "files" and meta["status"] == "FINISHED"
    data = LocalStore(tmp_path).get_run(run.run_id)
    assert data.tags == {"a": "b", "stage": "dev"}


def test_the_default_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOCAL_DIR", str(tmp_path / "elsewhere"))
    assert LocalBackend().root == tmp_path / "elsewhere"
    assert LocalStore().root == tmp_path / "elsewhere"


def test_torn_last_lines_are_ignored(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.start_run(RunInfo(run_id="r", name="torn"))
    backend.log_batch(LogBatch("r", [("loss", 1.0, 0, 10), ("loss", 2.0, 1, 11)], {"p": "1"}))
    backend.close()
    with open(tmp_path / "r" / "metrics.tsv", "a") as f:
        f.write("loss\t2\t12\t3.")  # a write cut off by SIGKILL
    with open(tmp_path / "r" / "params.jsonl", "a") as f:
        f.write('{"q": ')
    data = LocalStore(tmp_path).get_run("r")
    assert [(m.step, m.value) for m in data.history("loss")] == [(0, 1.0), (1, 2.0)]
    assert data.params == {"p": "1"}
    assert data.info.status is RunStatus.RUNNING


def test_runs_are_listed_and_unknown_ones_named(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    for i in range(3):
        backend.start_run(RunInfo(run_id=f"r{i}", name=f"run {i}"))
        backend.log_dataset(LogDataset(f"r{i}", DatasetInfo(name="X", digest=f"d{i}")))
        backend.end_run(EndRun(f"r{i}", "FAILED", 99))
    store = LocalStore(tmp_path)
    assert sorted(store.run_ids()) == ["r0", "r1", "r2"]
    assert {r.status for r in store.runs()} == {RunStatus.FAILED}
    assert store.get_run("r1").datasets[0].digest == "d1"
    with pytest.raises(KeyError, match="no run 'r9' in the local store"):
        store.get_run("r9")
    assert LocalStore(tmp_path / "missing").runs() == []


def test_a_replayed_start_keeps_the_first_meta(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.apply(StartRun(RunInfo(run_id="r", name="first")))
    backend.apply(StartRun(RunInfo(run_id="r", name="second")))
    assert LocalStore(tmp_path).info("r").name == "first"


def test_search_runs_filters_and_orders_like_mlflow(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    for i, (lr, loss) in enumerate([(0.1, 0.5), (0.01, 0.2), (0.1, 0.9)]):
        with mlhooks.start_run(f"r{i}", backends=[backend], experiment="exp") as run:
            mlhooks.log_param("lr", lr)
            mlhooks.log_metric("loss", loss + 1, step=0)
            mlhooks.log_metric("loss", loss, step=1)
    with mlhooks.start_run("other", backends=[backend], experiment="elsewhere"):
        mlhooks.log_metric("loss", 0.0)
    frame = mlhooks.search_runs(
        experiment="exp",
        filter_string="params.lr = '0.1' and metrics.loss < 0.95",
        order_by=["metrics.loss DESC"],
        backend=backend,
    )
    assert list(frame["run_name"]) == ["r2", "r0"]
    assert list(frame["metrics.loss"]) == [0.9, 0.5]
    assert set(frame["status"]) == {"FINISHED"}
    everything = mlhooks.search_runs(backend=backend)
    assert list(everything["run_name"]) == ["other", "r2", "r1", "r0"]  # newest first
    history = mlhooks.get_metric_history(run.run_id, "loss", backend=backend)
    assert [(m.step, m.value) for m in history] == [(0, 1.9), (1, 0.9)]
    assert list(mlhooks.search_runs("exp", "tags.nope = 'x'", backend=backend).columns) == []
    with pytest.raises(ValueError, match="cannot parse the filter clause"):
        mlhooks.search_runs(filter_string="loss", backend=backend)
    with pytest.raises(ValueError, match="unknown filter key 'loss'"):
        mlhooks.search_runs(filter_string="loss < 1", backend=backend)


def test_search_runs_matches_like_patterns_and_attributes(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    for name in ("resnet-a", "resnet-b", "vit"):
        with mlhooks.start_run(name, backends=[backend], tags={"family": name.split("-")[0]}):
            pass
    frame = mlhooks.search_runs(filter_string="tags.family LIKE 'res%'", backend=backend)
    assert sorted(frame["run_name"]) == ["resnet-a", "resnet-b"]
    frame = mlhooks.search_runs(
        filter_string="attributes.run_name != 'vit' and status = 'FINISHED'", backend=backend
    )
    assert sorted(frame["run_name"]) == ["resnet-a", "resnet-b"]
