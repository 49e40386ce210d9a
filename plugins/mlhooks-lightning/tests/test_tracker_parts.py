"""The parts a Trainer's tracker is made of, each on its own, with real sessions into
the real MLflow store: learning rates, epoch and evaluation values, checkpoints, the
model summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import mlflow
import torch

import mlhooks
from conftest import Tiny, all_runs, history, only_run
from mlhooks.plugin import FitSession
from mlhooks_lightning import model
from mlhooks_lightning.checkpoints import CHECKPOINT_FLAVOR, Checkpoints
from mlhooks_lightning.epochs import EpochMetrics
from mlhooks_lightning.steps import StepMetrics, lr_names
from mlhooks_mlflow.testing import stored_models


def session(name: str = "Tiny", **kwargs: Any) -> FitSession:
    started = FitSession("lightning", name, **kwargs)
    started.start()
    assert started.active
    return started


def test_learning_rates_are_read_under_learning_rate_monitors_names() -> None:
    net = torch.nn.Linear(3, 1)
    first = torch.optim.SGD(net.parameters(), lr=0.1)
    second = torch.optim.SGD(net.parameters(), lr=0.2)
    grouped = torch.optim.Adam(
        [{"params": [net.weight], "lr": 0.3}, {"params": [net.bias], "lr": 0.4}]
    )
    names = lr_names([first, second, grouped])
    assert [n for _, n in names] == [["lr-SGD-0"], ["lr-SGD-1"], ["lr-Adam/pg1", "lr-Adam/pg2"]]

    steps = StepMetrics()
    steps.start(every=10, step=0, optimizers=[first, grouped])
    first.param_groups[0]["lr"] = 0.05  # a scheduler stepped
    assert steps.learning_rates() == {"lr-SGD": 0.05, "lr-Adam/pg1": 0.3, "lr-Adam/pg2": 0.4}
    assert StepMetrics().learning_rates() == {}  # not fitting: no optimizers


def test_held_validation_values_join_the_epoch_and_evaluation_steps_keep_growing(
    client: Any,
) -> None:
    fit = session()
    epochs = EpochMetrics()
    epochs.hold({"val_loss": 0.5})
    epochs.epoch_end(fit, 0, {"loss_epoch": 1.0}, step=0)
    assert epochs.held == {}
    for stage, value in [("validate", 0.1), ("validate", 0.2), ("test", 0.3)]:
        epochs.eval_step(fit, stage, {f"{stage}_x_step": value})
    epochs.reset()  # a new call: the evaluation steps go on
    epochs.eval_step(fit, "validate", {"validate_x_step": 0.4})
    epochs.hold({"val_loss": 0.25})
    epochs.log_held(fit, step=1)  # the call ended before its epoch did
    fit.end()

    assert history(client, only_run(client)) == {
        "loss_epoch": [(0, 1.0)],
        "val_loss": [(0, 0.5), (1, 0.25)],
        "validate_x_step": [(0, 0.1), (1, 0.2), (2, 0.4)],
        "test_x_step": [(0, 0.3)],
    }


class Saved:
    """A listener: every checkpoint reported, as plugins see them."""

    def __init__(self) -> None:
        self.models: list[Any] = []

    @mlhooks.hookimpl
    def on_model_saved(self, run: Any, model: Any) -> None:
        self.models.append(model)


def test_each_new_checkpoint_file_is_reported_once(
    client: Any, tmp_path: Path, mlhooks_plugin: Any
) -> None:
    saved = mlhooks_plugin(Saved())
    keeper = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    (tmp_path / "ckpt").mkdir()
    old = tmp_path / "ckpt" / "old.ckpt"
    old.write_bytes(b"before the fit")
    keeper.best_model_path = str(old)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    fit = session()

    checkpoints = Checkpoints(enabled=True)
    checkpoints.watch([keeper])
    checkpoints.poll(trainer, fit)
    assert saved.models == []  # there before the fit: not new

    new = tmp_path / "ckpt" / "epoch=1-step=8.ckpt"
    new.write_bytes(b"weights")
    checkpoints.saving({"epoch": 1, "global_step": 8})
    keeper.best_k_models = {str(new): torch.tensor(0.25)}
    keeper.best_model_path = str(new)
    checkpoints.poll(trainer, fit)
    checkpoints.poll(trainer, fit)  # nothing changed since
    Checkpoints(enabled=False).saved(trainer, keeper, fit)  # log_checkpoints=False
    fit.end()

    [reported] = saved.models
    assert reported.flavor == CHECKPOINT_FLAVOR and reported.name == "checkpoints/epoch=1-step=8"
    assert reported.metadata == {
        "monitor": "val_loss",
        "score": 0.25,
        "best": True,
        "last": False,
        "epoch": 1,
        "global_step": 8,
    }
    run = only_run(client)
    models = stored_models(client, run.info.run_id)  # logged models with MLflow 3
    stored = [name for name in models if name.startswith("checkpoints/")]
    assert stored == ["checkpoints/epoch=1-step=8"]


def test_the_model_summary_goes_to_the_sessions_run_not_the_active_one(client: Any) -> None:
    with mlhooks.start_run("user") as user:
        child = session(parent=user.info)  # a run beside the active one
        model.log_summary(child, Tiny())
        child.end()
    runs = {run.info.run_name: run for run in all_runs(client)}
    assert set(runs) == {"user", "Tiny"}
    summary = mlflow.artifacts.load_text(f"runs:/{runs['Tiny'].info.run_id}/model_summary.txt")
    assert "Sequential" in summary and "21 parameters" in summary
    user_files = [a.path for a in client.list_artifacts(runs["user"].info.run_id)]
    assert "model_summary.txt" not in user_files  # where mlhooks.log_artifact would put it
