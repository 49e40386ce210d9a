"""Fixtures: a real sqlite MLflow store per test; tiny real Lightning models on the CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, TensorDataset

import mlhooks

os.environ.setdefault("MLHOOKS_STRICT", "1")
torch.set_num_threads(1)

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(autouse=True)
def tracking_uri(
    mlhooks_clean: None, mlflow_tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``);
    ``mlhooks_clean`` turns autologging off after it."""
    monkeypatch.chdir(tmp_path)  # Lightning writes lightning_logs/ and checkpoints/ here
    return mlflow_tracking_uri


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def all_runs(client: MlflowClient) -> list[Any]:
    mlhooks.flush(60)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments)


def only_run(client: MlflowClient) -> Any:
    runs = all_runs(client)
    assert len(runs) == 1, f"{len(runs)} MLflow runs: {[r.info.run_name for r in runs]}"
    return runs[0]


def history(client: MlflowClient, run: Any) -> dict[str, list[tuple[int, float]]]:
    """Every metric of ``run``: key -> [(step, value)] in step order."""
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }


def assert_no_duplicates(points: dict[str, list[tuple[int, float]]]) -> None:
    for key, values in points.items():
        steps = [step for step, _ in values]
        assert len(steps) == len(set(steps)), f"{key} has repeated steps: {steps}"


def loader(n: int = 32, batch_size: int = 8, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


class Tiny(L.LightningModule):
    """3 -> hidden -> 1; logs ``loss`` on step and epoch, ``val_loss`` and ``test_loss``."""

    def __init__(
        self,
        lr: float = 0.05,
        hidden: int = 4,
        extra: dict | None = None,
        fail_at: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["fail_at", "error"])
        self.fail_at, self.error = fail_at, error
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.fail_at is not None and self.global_step >= self.fail_at:
            raise self.error or ValueError("user code failed")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def trainer(**kwargs: Any) -> L.Trainer:
    options = {"max_epochs": 2, "logger": False, "accelerator": "cpu", **QUIET, **kwargs}
    return L.Trainer(**options)


def _pl_tiny() -> type:
    import pytorch_lightning as PL

    class PLTiny(PL.LightningModule):
        """Tiny, on the ``pytorch_lightning`` package."""

        training_step = Tiny.training_step
        validation_step = Tiny.validation_step
        configure_optimizers = Tiny.configure_optimizers
        forward = Tiny.forward

        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"lr": 0.05})
            self.net, self.fail_at, self.error = Tiny().net, None, None

    PLTiny.__qualname__ = "PLTiny"
    return PLTiny


PLTiny = _pl_tiny()
