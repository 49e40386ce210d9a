"""Real fits autologged into W&B and, beside it, the local store: every param, point,
tag, dataset, model and file W&B stored must be what mlhooks stored locally."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from torch.utils.data import DataLoader, TensorDataset

import mlhooks
from conftest import assert_same_run, stored_run
from mlhooks import LocalStore
from mlhooks_wandb import STEP_METRIC, reading


@pytest.fixture(autouse=True)
def frameworks_installed() -> None:
    """Both integrations are part of this plugin's test extra (CI installs them)."""
    import mlhooks_lightning  # noqa: F401
    import mlhooks_sklearn  # noqa: F401


def test_an_autologged_grid_search_parent_and_children(wandb_dir: Path) -> None:
    mlhooks.autolog(backends=["wandb", "local"])
    X, y = load_diabetes(return_X_y=True)
    search = GridSearchCV(Ridge(), {"alpha": [0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    assert mlhooks.flush(60)

    store = LocalStore()
    runs = [store.get_run(run_id) for run_id in store.run_ids()]
    (parent,) = [run for run in runs if run.info.parent_id is None]
    children = [run for run in runs if run.info.parent_id == parent.info.run_id]
    assert len(children) == 3 and len(runs) == 4
    for logged in runs:
        assert_same_run(logged, stored_run(wandb_dir, logged.info.run_id))

    group = f"GridSearchCV-{parent.info.run_id[:8]}"
    assert stored_run(wandb_dir, parent.info.run_id).group == ""
    for child in children:
        stored = stored_run(wandb_dir, child.info.run_id)
        assert stored.group == group
        assert stored.config["alpha"] == float(child.params["alpha"])
    parent_stored = stored_run(wandb_dir, parent.info.run_id)
    assert "mlhooks.framework=sklearn" in parent_stored.tags
    assert {a.name for a in parent_stored.artifacts if a.type == "dataset"} == {"X", "y"}
    model = parent_stored.artifact("model", f"model-{parent.info.run_id}")
    loaded = pickle.loads(Path(model.files["model.pkl"]).read_bytes())
    assert np.array_equal(loaded.predict(X), search.predict(X))
    assert "cv_results.csv" in parent_stored.files


class Regressor(LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_an_autologged_lightning_fit(wandb_dir: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    mlhooks.autolog(backends=["wandb", "local"])
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    trainer = Trainer(
        max_epochs=3,
        log_every_n_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(wandb_dir.parent),
    )
    model = Regressor()
    trainer.fit(model, DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    assert mlhooks.flush(60)

    store = LocalStore()
    (logged,) = [store.get_run(run_id) for run_id in store.run_ids()]
    stored = stored_run(wandb_dir, logged.info.run_id)
    assert_same_run(logged, stored)
    assert len(stored.points("train_loss_step")) == 12
    assert [step for step, _ in stored.points("train_loss_epoch")] == [
        p.step for p in logged.history("train_loss_epoch")
    ]
    assert stored.config["lr"] == 0.1
    # The model and each epoch's checkpoint, as W&B model artifacts (compared above,
    # although Lightning deleted the older checkpoint files since).
    assert sorted(m.name for m in logged.models) == [
        "checkpoints/epoch=0-step=4",
        "checkpoints/epoch=1-step=8",
        "checkpoints/epoch=2-step=12",
        "model",
    ]
    kept = stored.artifact("model", f"model-{logged.info.run_id}")
    loaded = pickle.loads(Path(kept.files["model.pkl"]).read_bytes())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    # A W&B chart of any metric has the mlhooks step on its x axis.
    assert all(STEP_METRIC in row for row in stored.history)
    assert reading.load_run(wandb_dir, logged.info.run_id).exit_code == 0
