"""The core's shared safety and import/patch/unpatch ordering tests, on real Lightning."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from conftest import PLTiny, Tiny, loader
from mlhooks.testing.contract import IntegrationContract
from mlhooks_lightning import tracker

FIT_CODE = """
import torch
from torch.utils.data import DataLoader, TensorDataset
x = torch.randn(8, 3)
class Tiny({package}.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
    def training_step(self, batch, i):
        x, = batch
        loss = self.net(x).pow(2).mean()
        self.log("loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
{package}.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False).fit(
    Tiny(), DataLoader(TensorDataset(x), batch_size=4))
"""


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The import-order scripts load only this plugin: importing MLflow there would
    double their time for nothing (they write to the memory backend)."""
    monkeypatch.setenv("MLHOOKS_PLUGINS", "lightning")


class LightningContract(IntegrationContract):
    framework = "lightning"
    user_errors = (ValueError, ZeroDivisionError)
    # Not KeyboardInterrupt: Lightning turns it into sys.exit(1) after a graceful
    # shutdown (and ignores SIGINT for the rest of the process).
    emits_epochs = True

    def trainer(self, max_epochs: int = 1) -> Any:
        raise NotImplementedError

    def fit_epochs(self) -> int:
        self.trainer(max_epochs=3).fit(self.model(), loader())
        return 3

    def model(self, **kwargs: Any) -> Any:
        return Tiny(**kwargs)

    def fit(self) -> list[float]:
        model = self.model()
        self.trainer().fit(model, loader())
        return [round(v, 6) for v in torch.cat([p.flatten() for p in model.parameters()]).tolist()]

    def fit_raising(self, error: BaseException) -> None:
        self.trainer().fit(self.model(fail_at=1, error=error), loader())

    def break_integration(self, monkeypatch: Any) -> None:
        def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("contract boom")

        monkeypatch.setattr(tracker.Tracker, "begin", boom)


class TestLightningContract(LightningContract):
    modules = ("lightning.pytorch",)
    targets = (
        "lightning.pytorch.trainer.trainer:Trainer.fit",
        "lightning.pytorch.trainer.trainer:Trainer.validate",
        "lightning.pytorch.trainer.trainer:Trainer.test",
    )
    fit_code = "import lightning.pytorch as L\n" + FIT_CODE.format(package="L")

    def trainer(self, max_epochs: int = 1) -> Any:
        import lightning.pytorch as L

        return L.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip


class TestPytorchLightningContract(LightningContract):
    modules = ("pytorch_lightning",)
    targets = (
        "pytorch_lightning.trainer.trainer:Trainer.fit",
        "pytorch_lightning.trainer.trainer:Trainer.validate",
        "pytorch_lightning.trainer.trainer:Trainer.test",
    )
    fit_code = "import pytorch_lightning as PL\n" + FIT_CODE.format(package="PL")

    def trainer(self, max_epochs: int = 1) -> Any:
        import pytorch_lightning as PL

        return PL.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)  # fmt: skip

    def model(self, **kwargs: Any) -> Any:
        model = PLTiny()
        if kwargs:
            model.fail_at, model.error = kwargs["fail_at"], kwargs["error"]
        return model
