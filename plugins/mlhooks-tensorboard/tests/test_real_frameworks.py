"""Real fits autologged into TensorBoard and, beside it, an in-memory store: every scalar
read back with TensorBoard's own reader must equal what the fit reported, step by step.
Each test runs when its framework plugin is installed (the nox tests session installs
them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlhooks
from mlhooks.backends.memory import MemoryBackend
from mlhooks_tensorboard import reading


def needs_plugin(module: str) -> None:
    """Skip when the framework plugin is absent; ``nox -s tests`` (CI) installs them all."""
    pytest.importorskip(module, reason=f"{module} is not installed")


def autolog_to_tensorboard_and_memory() -> MemoryBackend:
    reference = MemoryBackend()
    mlhooks.autolog(backends=["tensorboard", reference], log_models=False)
    return reference


def only_run_in_both(tb_root: Path, reference: MemoryBackend) -> dict[str, Any]:
    mlhooks.flush()
    run = reference.only_run()
    stored = reading.scalars(reading.load(reading.find_run_dir(tb_root, run.info.run_id)))
    assert stored == reading.expected_scalars(run.metrics)
    return stored


def test_a_sklearn_fit(tb_root: Path) -> None:
    needs_plugin("mlhooks_sklearn")
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    reference = autolog_to_tensorboard_and_memory()
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(X, y)

    stored = only_run_in_both(tb_root, reference)
    assert [value for _, value, _ in stored["loss"]] == [
        reading.as_stored(v) for v in model.loss_curve_
    ]
    assert "training_accuracy_score" in stored


def test_a_50_round_xgboost_fit(tb_root: Path) -> None:
    needs_plugin("mlhooks_xgboost")
    import xgboost as xgb

    reference = autolog_to_tensorboard_and_memory()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    train, valid = xgb.DMatrix(X[:300], y[:300]), xgb.DMatrix(X[300:], y[300:])
    history: dict[str, Any] = {}
    xgb.train(
        {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "nthread": 1},
        train,
        num_boost_round=50,
        evals=[(train, "train"), (valid, "valid")],
        evals_result=history,
        verbose_eval=False,
    )

    stored = only_run_in_both(tb_root, reference)
    for data, metrics in history.items():
        for metric, values in metrics.items():
            points = stored[f"{data}-{metric}"]
            assert [step for step, _, _ in points] == list(range(50))
            assert [value for _, value, _ in points] == [reading.as_stored(v) for v in values]


def test_a_3_epoch_lightning_fit(tb_root: Path) -> None:
    needs_plugin("mlhooks_lightning")
    import torch
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    reference = autolog_to_tensorboard_and_memory()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    trainer = Trainer(
        max_epochs=3,
        log_every_n_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Regressor(), DataLoader(data, batch_size=16))

    stored = only_run_in_both(tb_root, reference)
    assert [step for step, _, _ in stored["train_loss_epoch"]] == [0, 1, 2]
    assert len(stored["train_loss_step"]) == 12
