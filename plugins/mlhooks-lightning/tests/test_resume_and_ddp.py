"""Resuming from a checkpoint continues the run; DDP on the CPU makes one run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import lightning.pytorch as L
import pytest

import mlhooks
from conftest import Tiny, assert_no_duplicates, history, loader, only_run, trainer
from mlhooks.testing import wait_for_services
from mlhooks_lightning import MlhooksCallback
from mlhooks_lightning.tracker import RUN_KEY
from mlhooks_mlflow.testing import stored_models


def test_a_resumed_fit_continues_the_same_run(client, tmp_path):
    first = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(callbacks=[MlhooksCallback(log_every_n_steps=2), first], max_epochs=1).fit(
        Tiny(), loader(), loader()
    )
    import torch

    saved = torch.load(first.last_model_path, weights_only=False)
    assert isinstance(saved[RUN_KEY]["run_id"], str)

    class StatusWhileTraining(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            self.status = only_run(client).info.status  # flushes first

    mlhooks.autolog(log_every_n_steps=2)  # the second fit is tracked by autolog's callback
    second = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt2", save_last=True)
    watcher = StatusWhileTraining()
    trainer(callbacks=[second, watcher], max_epochs=2).fit(
        Tiny(), loader(), loader(), ckpt_path=first.last_model_path
    )
    assert watcher.status == "RUNNING"  # the continued run is running again

    run = only_run(client)
    points = history(client, run)
    assert_no_duplicates(points)
    assert [s for s, _ in points["loss_step"]] == [2, 4, 6, 8]
    assert [s for s, _ in points["loss_epoch"]] == [0, 1]
    assert [s for s, _ in points["val_loss"]] == [0, 1]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlhooks.lightning.resumed"] == "true"
    assert run.data.params["trainer.max_epochs"] == "1"  # params stay those of the first fit


DDP_SCRIPT = """
import sys
import torch
import lightning.pytorch as L
from torch.utils.data import DataLoader, TensorDataset
import mlhooks


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


if __name__ == "__main__":
    torch.set_num_threads(1)
    mlhooks.autolog(log_every_n_steps=1)
    trainer = L.Trainer(
        strategy=sys.argv[1], accelerator="cpu", devices=2, max_epochs=2, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(), loader(), loader())
"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp"])
def test_ddp_on_two_cpu_processes_makes_one_run(client, tmp_path, tracking_uri, strategy):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLHOOKS_STRICT": "1",
        "OMP_NUM_THREADS": "1",
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"),
    }
    done = subprocess.run(
        [sys.executable, str(script), strategy],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    # What the ranks' writer services still store after the script exited, as a user
    # waits for it (a rank may hand over to a service that is not the script's own).
    assert wait_for_services(tmp_path / "runs", 300)

    run = only_run(client)
    points = history(client, run)
    assert_no_duplicates(points)
    # 32 samples over 2 ranks in batches of 8: 2 optimizer steps an epoch.
    assert [s for s, _ in points["loss_step"]] == [1, 2, 3, 4]
    assert [s for s, _ in points["loss_epoch"]] == [0, 1]
    assert [s for s, _ in points["val_loss"]] == [0, 1]
    assert run.data.params["trainer.strategy"] == "DDPStrategy"
    assert run.data.params["trainer.devices"] == "2"
    assert run.info.status == "FINISHED"
    models = {name.split("/")[0] for name in stored_models(client, run.info.run_id)}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | models
    assert {"model", "checkpoints"} <= artifacts
