"""An autologged fit (a throwaway integration of ``toyfw``) lands in TensorBoard: every
scalar compared exactly with what the same fit stored in memory, params in HParams,
and one notice for the model and one for the dataset, which TensorBoard does not keep."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import toyfw
from toy_integration import ToyPlugin

import mlhooks
from mlhooks.backends.memory import MemoryBackend
from mlhooks_tensorboard import reading


@pytest.fixture
def toy(mlhooks_plugin: Callable[..., Any]) -> None:
    mlhooks_plugin(ToyPlugin(), name="toy")


def test_an_autologged_fit_is_in_tensorboard_exactly(
    toy: None, tb_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    reference = MemoryBackend()
    mlhooks.autolog(backends=["tensorboard", reference])
    for epochs in (3, 5):
        toyfw.Regressor(epochs=epochs, lr=0.25).fit([[0.0], [1.0]], [0.0, 1.0])
    mlhooks.flush()

    assert len(reference.runs) == 2
    for run in reference.runs.values():
        folder = reading.find_run_dir(tb_root, run.info.run_id)
        assert folder.name == f"Regressor-{run.info.run_id[:8]}"
        acc = reading.load(folder)
        assert reading.scalars(acc) == reading.expected_scalars(run.metrics)
        assert len(reading.scalars(acc)["loss"]) == int(run.params["epochs"])
        assert reading.hparams(acc) == {
            "epochs": float(run.params["epochs"]),
            "lr": 0.25,
            "solver": "sgd",
        }
        assert reading.texts(acc) == {"tags/mlhooks.framework": ["toyfw"]}
        assert reading.session_end(acc)[0] == "STATUS_SUCCESS"  # type: ignore[index]

    said = [r.getMessage() for r in caplog.records if r.name == "mlhooks"]
    assert len(said) == 4  # per run: the model and the dataset, once each
    assert sum("does not keep models, so model 'model'" in n for n in said) == 2
    assert sum("does not keep datasets, so dataset 'X'" in n for n in said) == 2
    assert all("it goes to memory" in n for n in said)


def test_run_context_lands_as_text_without_a_notice(
    tb_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_CONTEXT", "1")
    caplog.set_level(logging.WARNING, logger="mlhooks")
    with mlhooks.start_run("with-context", backends=["tensorboard"]) as run:
        mlhooks.log_metric("loss", 1.0)
    mlhooks.flush()
    texts = reading.texts(reading.load(reading.find_run_dir(tb_root, run.info.run_id)))
    assert "tags/mlflow.source.name" in texts
    assert not [r for r in caplog.records if r.name == "mlhooks"]
