"""autolog(), MlhooksLogger and their combinations: one run, every point once."""

from __future__ import annotations

import csv

import lightning.pytorch as L
import pytest
import torch

import mlhooks
from conftest import (
    PLTiny,
    Tiny,
    all_runs,
    assert_no_duplicates,
    history,
    loader,
    only_run,
    trainer,
)
from mlhooks_lightning import MlhooksCallback, MlhooksLogger
from mlhooks_mlflow.testing import stored_models

EXPECTED = {
    "loss_step": [2, 4, 6, 8],
    "loss_epoch": [0, 1],
    "val_loss": [0, 1],
    "lr-SGD": [2, 4, 6, 8],
}


def stored_tops(client, run):
    """The top folders of the run's models (MLflow 3 keeps them as logged models, not
    among the run's artifacts)."""
    return {name.split("/")[0] for name in stored_models(client, run.info.run_id)}


def steps(points):
    return {key: [s for s, _ in values] for key, values in points.items()}


def test_autolog_alone(client):
    mlhooks.autolog(log_every_n_steps=2)
    fit = trainer()
    callbacks = fit.callbacks
    fit.fit(Tiny(), loader(), loader())

    assert fit.callbacks is callbacks  # the callback added for the call is gone
    assert not any(isinstance(c, MlhooksCallback) for c in fit.callbacks)
    run = only_run(client)
    assert steps(history(client, run)) == EXPECTED
    assert run.data.tags["mlhooks.framework"] == "lightning"
    assert run.info.run_name == "Tiny"


def test_explicit_callback_and_autolog_track_once(client):
    mlhooks.autolog(log_every_n_steps=1)
    mine = MlhooksCallback(log_every_n_steps=2)  # the explicit one wins
    fit = trainer(callbacks=[mine])
    fit.fit(Tiny(), loader(), loader())

    assert [c for c in fit.callbacks if isinstance(c, MlhooksCallback)] == [mine]
    points = history(client, only_run(client))
    assert_no_duplicates(points)
    assert steps(points) == EXPECTED


@pytest.mark.parametrize("with_autolog", [False, True])
def test_the_logger_alone_and_with_autolog(client, with_autolog):
    if with_autolog:
        mlhooks.autolog()
    fit = trainer(logger=MlhooksLogger(), log_every_n_steps=2)
    model = Tiny()
    fit.fit(model, loader(), loader())

    run = only_run(client)
    points = history(client, run)
    assert_no_duplicates(points)
    assert steps(points) == EXPECTED
    assert run.data.params["lr"] == "0.05"
    assert run.data.params["optimizer.class"] == "SGD"
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | stored_tops(client, run)
    assert {"model", "checkpoints"} <= artifacts


def test_logger_and_callback_together_track_once(client):
    fit = trainer(logger=MlhooksLogger(), callbacks=[MlhooksCallback()], log_every_n_steps=2)
    fit.fit(Tiny(), loader(), loader())

    points = history(client, only_run(client))
    assert_no_duplicates(points)
    assert steps(points) == EXPECTED


def test_a_users_own_logger_keeps_working_beside_autolog(client, tmp_path):
    mlhooks.autolog(log_every_n_steps=2)
    users = L.loggers.CSVLogger(tmp_path / "csv")
    fit = trainer(logger=users, log_every_n_steps=2)
    fit.fit(Tiny(), loader(), loader())

    with open(f"{users.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r.get("loss_step")] == ["1", "3", "5", "7"]
    assert steps(history(client, only_run(client))) == EXPECTED


@pytest.mark.parametrize("own_options", [False, True])
def test_autolog_options_of_lightning_reach_its_callback(client, own_options):
    options = {"epoch_step": "global_step", "log_checkpoints": False} if own_options else {}
    mlhooks.autolog(log_every_n_steps=4, lightning=options)
    trainer().fit(Tiny(), loader(), loader())

    run = only_run(client)
    epochs = [s for s, _ in history(client, run)["loss_epoch"]]
    assert epochs == ([4, 8] if own_options else [0, 1])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | stored_tops(client, run)
    assert ("checkpoints" in artifacts) is not own_options


def test_a_misspelt_or_mistyped_lightning_option_fails_at_autolog():
    with pytest.raises(
        TypeError, match=r"unknown option 'epoch_stpe'; did you mean 'epoch_step'\?"
    ):
        mlhooks.autolog(lightning={"epoch_stpe": "global_step"})
    with pytest.raises(TypeError, match=r"'model' must be 'final' or 'best', not 'bets'"):
        mlhooks.autolog(lightning={"model": "bets"})


def test_autolog_disable_stops_tracking(client):
    mlhooks.autolog()
    mlhooks.autolog(disable=True)
    trainer().fit(Tiny(), loader())
    mlhooks.flush(60)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_the_pytorch_lightning_package_too(client):
    import pytorch_lightning as PL

    from mlhooks_lightning.for_pytorch_lightning import MlhooksCallback as PLCallback

    options = {"max_epochs": 2, "logger": False, "enable_progress_bar": False,
               "enable_model_summary": False, "log_every_n_steps": 2}  # fmt: skip
    mlhooks.autolog()
    PL.Trainer(**options).fit(PLTiny(), loader(), loader())  # autolog adds its callback
    mlhooks.autolog(disable=True)
    PL.Trainer(**options, callbacks=[PLCallback()]).fit(PLTiny(), loader(), loader())

    runs = all_runs(client)
    assert len(runs) == 2
    for run in runs:
        assert steps(history(client, run)) == EXPECTED


class StepOnly(Tiny):
    """Logs its loss on steps only: Lightning tells loggers of no epoch's end."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("loss", loss, on_step=True, on_epoch=False)
        return loss


@pytest.mark.parametrize("with_autolog", [False, True])
def test_epochs_reach_listeners_through_the_logger_without_epoch_values(
    client, mlhooks_plugin, with_autolog
):
    """``on_epoch_end`` comes once per epoch, in order, also when the model logs no
    epoch-level value and only the logger sees the fit (issue 16: events mean what
    they say); nothing more is stored."""
    heard = []

    class Listener:
        @mlhooks.hookimpl
        def on_epoch_end(self, fit, epoch, step, metrics):
            heard.append((epoch, step, dict(metrics)))

    mlhooks_plugin(Listener())
    if with_autolog:
        mlhooks.autolog()
    trainer(logger=MlhooksLogger(), max_epochs=3, log_every_n_steps=2).fit(StepOnly(), loader())
    assert heard == [(0, 0, {}), (1, 1, {}), (2, 2, {})]
    points = history(client, only_run(client))
    assert_no_duplicates(points)
    assert [s for s, _ in points["loss"]] == [2, 4, 6, 8, 10, 12]
