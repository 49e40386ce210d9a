"""The embedded local store: its files, reading them back, and surviving torn writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlhooks
from mlhooks import RunStatus
from mlhooks.backends import EndRun, LogBatch, LogDataset, StartRun
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.types import DatasetInfo, RunInfo


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
