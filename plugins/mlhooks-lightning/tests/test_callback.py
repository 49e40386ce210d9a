"""MlhooksCallback on real tiny Lightning fits, read back from a real sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as L
import mlflow
import pytest
import torch

import mlhooks
from conftest import Tiny, assert_no_duplicates, history, loader, only_run, trainer
from mlhooks_lightning import MlhooksCallback
from mlhooks_mlflow.testing import stored_models


def test_step_and_epoch_metrics_as_documented(client):
    # 4 batches an epoch, 2 epochs: optimizer steps 1..8; step-level values every 2 steps.
    fit = trainer(callbacks=[MlhooksCallback(log_every_n_steps=2)])
    fit.fit(Tiny(), loader(), loader())

    run = only_run(client)
    points = history(client, run)
    assert set(points) == {"loss_step", "loss_epoch", "val_loss", "lr-SGD"}
    assert [s for s, _ in points["loss_step"]] == [2, 4, 6, 8]
    assert [s for s, _ in points["loss_epoch"]] == [0, 1]
    assert [s for s, _ in points["val_loss"]] == [0, 1]  # the sanity check is not logged
    assert points["lr-SGD"] == [(2, 0.05), (4, 0.05), (6, 0.025), (8, 0.025)]
    assert points["val_loss"][-1][1] == pytest.approx(float(fit.callback_metrics["val_loss"]))
    assert points["loss_epoch"][-1][1] == pytest.approx(float(fit.callback_metrics["loss_epoch"]))
    assert run.info.status == "FINISHED"


def test_epoch_values_at_the_global_step_when_asked(client):
    fit = trainer(callbacks=[MlhooksCallback(log_every_n_steps=4, epoch_step="global_step")])
    fit.fit(Tiny(), loader(), loader())

    points = history(client, only_run(client))
    assert [s for s, _ in points["loss_epoch"]] == [4, 8]
    assert [s for s, _ in points["val_loss"]] == [4, 8]
    assert [s for s, _ in points["loss_step"]] == [4, 8]


def test_step_values_with_gradient_accumulation_and_mid_epoch_validation(client):
    # 8 batches an epoch, 2 per optimizer step (4 steps an epoch), validation twice an epoch.
    fit = trainer(
        callbacks=[MlhooksCallback(log_every_n_steps=1, epoch_step="global_step")],
        accumulate_grad_batches=2,
        val_check_interval=0.5,
    )
    fit.fit(Tiny(), loader(n=64), loader())

    points = history(client, only_run(client))
    assert [s for s, _ in points["loss_step"]] == list(range(1, 9))
    assert [s for s, _ in points["lr-SGD"]] == list(range(1, 9))
    assert [s for s, _ in points["loss_epoch"]] == [4, 8]
    assert [s for s, _ in points["val_loss"]] == [2, 4, 6, 8]
    assert_no_duplicates(points)


def test_batch_hooks_mlhooks_leaves_alone_cost_nothing_yet_stay_overridable(client):
    from mlhooks_lightning import compat

    assert compat.skippable_hooks("lightning.pytorch") == compat.UNUSED_BATCH_HOOKS
    assert compat.skippable_hooks("pytorch_lightning") == compat.UNUSED_BATCH_HOOKS
    assert all(getattr(MlhooksCallback(), name) is None for name in compat.UNUSED_BATCH_HOOKS)

    class Counting(MlhooksCallback):
        batches = 0

        def on_train_batch_end(self, *args):
            super().on_train_batch_end(*args)  # Lightning's no-op, still there
            self.batches += 1

    callback = Counting(log_every_n_steps=1)
    assert callback.on_before_backward is None and callback.on_train_batch_end is not None
    fit = trainer(callbacks=[callback])
    fit.fit(Tiny(), loader(), loader())

    assert callback.batches == 8
    assert [s for s, _ in history(client, only_run(client))["loss_step"]] == list(range(1, 9))


class Data(L.LightningDataModule):
    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return loader(batch_size=self.hparams.batch_size)

    def val_dataloader(self):
        return loader(n=16, batch_size=self.hparams.batch_size, seed=1)


def test_params_summary_and_datasets(client):
    model = Tiny(extra={"dropout": 0.1, "block": {"depth": 2}})
    fit = trainer(callbacks=[MlhooksCallback()], gradient_clip_val=0.5, max_epochs=1)
    fit.fit(model, datamodule=Data())

    run = only_run(client)
    params = run.data.params
    assert params["lr"] == "0.05" and params["hidden"] == "4"
    assert params["extra.dropout"] == "0.1" and params["extra.block.depth"] == "2"
    assert params["batch_size"] == "8"  # the datamodule's
    assert params["trainer.max_epochs"] == "1"
    assert params["trainer.gradient_clip_val"] == "0.5"
    assert params["trainer.precision"] == "32-true"
    assert params["trainer.accumulate_grad_batches"] == "1"
    assert params["trainer.devices"] == "1"
    assert params["trainer.strategy"] == "SingleDeviceStrategy"
    assert params["optimizer.class"] == "SGD" and params["optimizer.lr"] == "0.05"
    assert params["scheduler.class"] == "StepLR" and params["scheduler.gamma"] == "0.5"
    assert params["model.params.total"] == str(sum(p.numel() for p in model.parameters()))
    summary = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_summary.txt")
    assert "Sequential" in summary and "21 parameters" in summary

    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    found = {i.dataset.name: i for i in inputs}
    assert set(found) == {"train", "val"}
    contexts = {name: i.tags[0].value for name, i in found.items()}
    assert contexts == {"train": "train", "val": "eval"}
    assert '"shape": [32]' in found["train"].dataset.profile


def test_the_model_reloads_and_gives_the_same_outputs(client):
    model = Tiny()
    trainer(callbacks=[MlhooksCallback()]).fit(model, loader())

    run = only_run(client)
    loaded = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


class Saved:
    """A listener: every model and checkpoint reported, as plugins see them."""

    def __init__(self) -> None:
        self.models: list = []

    @mlhooks.hookimpl
    def on_model_saved(self, run, model) -> None:
        self.models.append(model)


def test_every_checkpoint_is_stored_even_after_save_top_k_deleted_it(
    client, tmp_path, mlhooks_plugin
):
    saved = mlhooks_plugin(Saved())
    keeper = L.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1, save_last=True
    )
    model = Tiny(lr=0.01)
    fit = trainer(callbacks=[MlhooksCallback(model="best"), keeper], max_epochs=3)
    fit.fit(model, loader(), loader())

    on_disk = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert len(on_disk) == 2  # the best and last.ckpt: top-k deleted the others
    run = only_run(client)
    models = stored_models(client, run.info.run_id)  # logged models with MLflow 3
    stored = sorted(name for name in models if name.startswith("checkpoints/"))
    epochs = [f"checkpoints/epoch={e}-step={4 * (e + 1)}" for e in range(3)]
    assert stored == sorted([*epochs, "checkpoints/last"])
    folder = Path(mlflow.artifacts.download_artifacts(models[epochs[0]]))
    files = sorted(f"{epochs[0]}/{path.name}" for path in folder.iterdir())
    assert files == [f"{epochs[0]}/epoch=0-step=4.ckpt", f"{epochs[0]}/mlhooks-model.json"]
    facts = json.loads((folder / "mlhooks-model.json").read_text())
    assert facts["monitor"] == "val_loss" and facts["epoch"] == 0 and facts["global_step"] == 4
    reported = [m for m in saved.models if m.flavor == "lightning_checkpoint"]
    assert [m.name for m in reported] == [
        *epochs[:1],
        "checkpoints/last",
        *epochs[1:2],
        "checkpoints/last",
        *epochs[2:],
        "checkpoints/last",
    ]
    assert all(m.metadata["last"] for m in reported if m.name == "checkpoints/last")
    assert all(
        isinstance(m.metadata["score"], float) for m in reported if m.name != "checkpoints/last"
    )

    best = run.data.tags["mlhooks.lightning.best_checkpoint"]
    assert best == f"checkpoints/{keeper.best_model_path.rsplit('/', 1)[-1][:-5]}"
    assert float(run.data.tags["mlhooks.lightning.best_score"]) == pytest.approx(
        float(keeper.best_model_score)
    )
    # model="best": the logged model holds the best checkpoint's weights
    loaded = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    best_state = torch.load(keeper.best_model_path, weights_only=False)["state_dict"]
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, best_state[name])


def test_early_stopping_values(client):
    # val_loss falls, so mode="max" sees no improvement and stops after `patience` epochs.
    stopper = L.callbacks.EarlyStopping(monitor="val_loss", mode="max", patience=2)
    fit = trainer(callbacks=[MlhooksCallback(), stopper], max_epochs=10)
    fit.fit(Tiny(), loader(), loader())

    run = only_run(client)
    assert fit.current_epoch < 10
    assert run.data.params["early_stopping.patience"] == "2"
    assert run.data.params["early_stopping.monitor"] == "val_loss"
    assert run.data.metrics["early_stopping.stopped_epoch"] == stopper.stopped_epoch > 0
    assert run.data.metrics["early_stopping.best_score"] == pytest.approx(float(stopper.best_score))


def test_a_user_exception_propagates_unchanged_and_fails_the_run(client):
    error = ValueError("raised in training_step")
    fit = trainer(callbacks=[MlhooksCallback(log_every_n_steps=1)])
    with pytest.raises(ValueError) as raised:
        fit.fit(Tiny(fail_at=3, error=error), loader())
    assert raised.value is error
    run = only_run(client)
    assert run.info.status == "FAILED"
    assert [s for s, _ in history(client, run)["loss_step"]] == [1, 2, 3]


def test_validate_and_test_after_fit_log_into_the_fit_run(client):
    fit = trainer(callbacks=[MlhooksCallback()])
    model = Tiny()
    fit.fit(model, loader(), loader())
    fit.validate(model, loader(n=16, seed=2))
    fit.test(model, loader(n=16, seed=3))

    run = only_run(client)
    points = history(client, run)
    assert_no_duplicates({k: v for k, v in points.items() if k != "val_loss"})
    assert points["test_loss"] == [(2, pytest.approx(float(fit.callback_metrics["test_loss"])))]
    assert [s for s, _ in points["val_loss"]] == [0, 1, 2]  # the last from validate()
    assert run.info.status == "FINISHED"


@pytest.mark.skipif(
    not hasattr(mlflow.MlflowClient, "create_logged_model"), reason="logged models: MLflow 3"
)
def test_registered_model_name_registers_the_fits_logged_model(client):
    """For users who do not autolog: the callback takes ``registered_model_name`` as
    ``autolog()`` does; the version comes from the fit's logged model (not from a
    checkpoint), and loads back by its registered name."""
    model = Tiny()
    keeper = L.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1)
    trainer(callbacks=[MlhooksCallback(registered_model_name="tiny"), keeper]).fit(
        model, loader(), loader(seed=1)
    )
    run = only_run(client)
    (version,) = client.search_model_versions("name='tiny'")
    assert (int(version.version), version.run_id) == (1, run.info.run_id)
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert (logged.name, logged.source_run_id) == ("model", run.info.run_id)
    loaded = mlflow.pytorch.load_model("models:/tiny/1")
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
