"""What lands in the other stores: the in-memory backend and the local file store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

import mlhooks
from conftest import QUIET
from mlhooks.testing import RecordedRuns

PARAMS = {"objective": "binary", "metric": "auc", "num_leaves": 7, **QUIET}


def train(data: dict[str, Any]) -> tuple[lgb.Booster, dict[str, Any]]:
    dtrain = lgb.Dataset(data["X"], label=data["y"])
    dvalid = lgb.Dataset(data["X_valid"], label=data["y_valid"], reference=dtrain)
    recorded: dict[str, Any] = {}
    booster = lgb.train(
        PARAMS, dtrain, 30, valid_sets=[dvalid], valid_names=["valid"],
        callbacks=[lgb.early_stopping(3, verbose=False), lgb.record_evaluation(recorded)],
    )  # fmt: skip
    return booster, recorded


def test_the_memory_backend(mlhooks_memory: RecordedRuns, data: dict[str, Any]) -> None:
    mlhooks.autolog()
    try:
        booster, recorded = train(data)
    finally:
        mlhooks.autolog(disable=True)
    run = mlhooks_memory.only_run()
    assert run.info.name == "lightgbm-train" and run.info.status is mlhooks.RunStatus.FINISHED
    points = run.history("valid-auc")
    assert [p.step for p in points] == list(range(len(recorded["valid"]["auc"])))
    assert [p.value for p in points] == pytest.approx(recorded["valid"]["auc"])
    assert run.latest()["best_iteration"] == booster.best_iteration
    assert {d.name: d.context for d in run.datasets} == {"train": "train", "valid": "eval"}
    (model,) = run.models
    assert model.flavor == "lightgbm"
    loaded = model.load()
    np.testing.assert_array_equal(loaded.predict(data["X_test"]), booster.predict(data["X_test"]))
    assert sorted(a for a in run.artifacts if a.startswith("feature_importance/")) == [
        f"feature_importance/{kind}.{ext}" for kind in ("gain", "split") for ext in ("json", "svg")
    ]


def test_the_local_store(mlhooks_clean: None, data: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "local-store"
    mlhooks.autolog(backends=[mlhooks.backend("local", root=str(root))])
    try:
        booster, recorded = train(data)
    finally:
        mlhooks.autolog(disable=True)
    assert mlhooks.flush(60)
    store = mlhooks.LocalStore(root)
    (run_id,) = store.run_ids()
    run = store.get_run(run_id)
    assert run.params["num_leaves"] == "7" and run.params["metric"] == "auc"
    assert [p.value for p in run.history("valid-auc")] == pytest.approx(recorded["valid"]["auc"])
    assert run.latest()["best.valid-auc"] == pytest.approx(booster.best_score["valid"]["auc"])
    assert {d.name for d in run.datasets} == {"train", "valid"}
    (model,) = run.models
    assert model.flavor == "lightgbm"
    np.testing.assert_array_equal(
        model.load().predict(data["X_test"]), booster.predict(data["X_test"])
    )
    split = json.loads(store.artifact_path(run_id, "feature_importance/split.json").read_text())
    assert split == dict(
        sorted(
            zip(
                booster.feature_name(), map(float, booster.feature_importance("split")), strict=True
            ),
            key=lambda item: item[1],
            reverse=True,
        )
    )
