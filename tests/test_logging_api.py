"""Manual logging: what lands, and the clear errors bad input gets."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlhooks
import mlhooks.plugin
from mlhooks import MlhooksWarning
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.testing import RecordedRuns


def test_params_metrics_and_tags_land(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("manual"):
        mlhooks.log_param("lr", 0.01)
        mlhooks.log_params({"layers": [64, 32], "optimizer": None, "lr": 0.01})
        mlhooks.set_tag("stage", "dev")
        mlhooks.set_tags({"stage": "prod", "owner": "ana"})
        mlhooks.log_metric("loss", np.float32(0.25), step=np.int64(4))
        mlhooks.log_metrics({"acc": 1, "f1": True}, step=5)
    run = mlhooks_memory.only_run()
    assert run.params == {"lr": "0.01", "layers": "[64, 32]", "optimizer": "None"}
    assert run.tags == {"stage": "prod", "owner": "ana"}
    assert run.history("loss")[0].step == 4 and run.history("loss")[0].value == 0.25
    assert run.latest() == {"loss": 0.25, "acc": 1.0, "f1": 1.0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mlhooks.log_metric("loss", "high"), "metric 'loss' must be a real number"),
        (lambda: mlhooks.log_metric("loss", None), "metric 'loss' must be a real number"),
        (lambda: mlhooks.log_metric("", 1.0), "invalid metric key '': .*empty"),
        (lambda: mlhooks.log_metric("a\nb", 1.0), "control characters"),
        (lambda: mlhooks.log_metric("x" * 300, 1.0), "at most 250 characters"),
        (lambda: mlhooks.log_metric(3, 1.0), "keys must be strings, not int"),
        (lambda: mlhooks.log_metric("loss", 1.0, step=1.5), "step must be an integer"),
        (lambda: mlhooks.log_param("../etc", 1), "must not start with '/' or contain '..'"),
        (lambda: mlhooks.set_tag(" ", "x"), "invalid tag key"),
        (lambda: mlhooks.log_metrics({"ok": 1.0, "bad": [1]}), "metric 'bad'"),
    ],
)
def test_bad_input_gets_a_clear_value_error(
    mlhooks_memory: RecordedRuns, call: Any, message: str
) -> None:
    with mlhooks.start_run("bad"):
        with pytest.raises(ValueError, match=message):
            call()


def test_a_param_cannot_change_within_a_run(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("params"):
        mlhooks.log_param("lr", 0.1)
        mlhooks.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(ValueError, match="param 'lr' .* logged as '0.1' and cannot change"):
            mlhooks.log_param("lr", 0.2)
    assert mlhooks_memory.only_run().params == {"lr": "0.1"}


def test_huge_and_odd_param_values_are_stored_as_strings(mlhooks_memory: RecordedRuns) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with mlhooks.start_run("odd"):
        mlhooks.log_params({"big": "x" * 6000, "nan": float("nan"), "obj": Unprintable()})
        with pytest.raises(ValueError, match="100000 characters, more than the 6000"):
            mlhooks.log_param("huge", "x" * 100_000)  # MLflow keeps 6000 (issue 13)
    params = mlhooks_memory.only_run().params
    assert len(params["big"]) == 6000 and "huge" not in params
    assert params["nan"] == "nan"
    assert params["obj"] == "<unprintable Unprintable>"


def test_artifacts_are_snapshots_taken_when_logged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = tmp_path / "report.txt"
    report.write_text("v1")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("b")
    with mlhooks.start_run("files", backends=[LocalBackend(store)]) as run:
        mlhooks.log_artifact(report, artifact_path="reports")
        report.write_text("v2, written after logging")
        mlhooks.log_artifacts(folder, artifact_path="plots")
        report.unlink()
    data = LocalStore(store).get_run(run.run_id)
    assert data.artifacts == ["plots/a.txt", "plots/sub/b.txt", "reports/report.txt"]
    assert LocalStore(store).artifact_path(run.run_id, "reports/report.txt").read_text() == "v1"


def test_artifact_errors_name_the_path(mlhooks_memory: RecordedRuns, tmp_path: Path) -> None:
    with mlhooks.start_run("files"):
        with pytest.raises(ValueError, match="missing.txt"):
            mlhooks.log_artifact(tmp_path / "missing.txt")
        with pytest.raises(ValueError, match="needs an existing directory"):
            mlhooks.log_artifacts(tmp_path / "nope")


def test_a_model_is_captured_when_logged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    model = {"weights": [1.0, 2.0]}
    with mlhooks.start_run("model", backends=[LocalBackend(store)]) as run:
        mlhooks.log_model(model, name="regressor", note="first")
        model["weights"] = [9.0, 9.0]  # a "refit" after logging
    stored = LocalStore(store).get_run(run.run_id).models
    assert len(stored) == 1
    assert stored[0].name == "regressor" and stored[0].flavor == "python"
    assert stored[0].metadata["note"] == "first"
    assert pickle.loads(stored[0].payload or b"") == {"weights": [1.0, 2.0]}


def test_an_unpicklable_model_gets_a_clear_error(mlhooks_memory: RecordedRuns) -> None:
    with mlhooks.start_run("model"), pytest.raises(ValueError, match="cannot be pickled"):
        mlhooks.log_model({"guard": threading.Lock()}, name="fn")  # a lambda is cloudpickled


def test_a_dataset_fingerprint_lands(mlhooks_memory: RecordedRuns) -> None:
    X = np.arange(12.0).reshape(4, 3)
    with mlhooks.start_run("data"):
        mlhooks.log_dataset(X, name="X_train")
        mlhooks.log_dataset(X[:2], name="X_test", context="eval")
    datasets = {d.name: d for d in mlhooks_memory.only_run().datasets}
    assert datasets["X_train"].shape == (4, 3) and datasets["X_train"].context == "train"
    assert datasets["X_test"].context == "eval"
    assert datasets["X_train"].digest != datasets["X_test"].digest


def test_autologging_sanitizes_instead_of_raising(
    mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    session = mlhooks.plugin.FitSession("manual", "sanitized")
    session.start()
    with pytest.warns(MlhooksWarning) as caught:
        session.log_metrics({"ok": 1.0, "bad\tkey": 2.0, "text": "high"}, step=1)
        session.log_params({"": 1, "a\nb": 2})
    session.end()
    run = mlhooks_memory.only_run()
    assert run.latest() == {"ok": 1.0, "bad_key": 2.0}
    assert {"_", "a_b"} <= set(run.params)
    assert len(caught) == 4
