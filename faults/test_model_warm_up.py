"""A fit that says which model it will report (``FitSession.expect_model``; Lightning's
does) has the writer service import what storing that model needs while the fit
trains, once the service may start (here at once, as in a Ray Tune trial): its end
then waits only for the save, not for seconds of imports. Bad input (a module that
fails to import, a name that is no module) and a service killed after the warm-up
change nothing that is stored."""

from __future__ import annotations

import pytest

from conftest import SERVICE, Store

FIT = """
    import sys, time
    from pathlib import Path
    import lightning.pytorch as L
    import torch
    import mlhooks
    import mlhooks.plugin
    from mlhooks.delivery import service_client
    from mlhooks.delivery.service_client import client

    Path("broken_for_mlhooks.py").write_text("raise RuntimeError('broken on purpose')")
    sys.path.insert(0, ".")
    mlhooks.autolog()
    mlhooks.plugin.start_writer_service_now()  # as a Ray Tune trial does
    # bad input: a module whose import raises, and a name that is no module
    service_client.expect_model("pytorch", ["broken_for_mlhooks", "not a module!"])

    def warmed_models():
        deadline = time.monotonic() + 240
        while "pytorch" not in client.describe()["warmed_models"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return client.describe()["warmed_models"]

    class AtFirstEpochEnd(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 0:
                print("WARMED", warmed_models(), flush=True)
                {at_epoch_end}

    class MLP(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16
    )
    L.Trainer(max_epochs=3, log_every_n_steps=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False,
              callbacks=[AtFirstEpochEnd()]).fit(MLP(), data)
    print("FLUSHED", mlhooks.flush(120), flush=True)
"""

pytestmark = [
    pytest.mark.parametrize("store", ["mlflow"], indirect=True),  # the service's backend
    pytest.mark.skipif(not SERVICE, reason="the warm-up is the writer service's"),
]


def _stored_model(store: Store) -> None:
    """The run is FINISHED with every step, and its one model loads as a module."""
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    from mlhooks_mlflow.testing import stored_models

    (run,) = store.all_runs()
    assert run.status == "FINISHED"
    steps = [step for step, _ in run.metrics["loss"]]
    assert len(steps) == len(set(steps)) == 12, steps  # each step, once
    client = MlflowClient(store.env["MLFLOW_TRACKING_URI"])
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (uri,) = stored_models(client, found.info.run_id).values()
    module = mlflow.pytorch.load_model(uri)
    assert module(torch.zeros(2, 4)).shape == (2, 1)


def test_the_service_makes_ready_for_the_fits_model_while_it_trains(store: Store) -> None:
    """By the end of the first epoch (of three) the service has imported the
    framework and MLflow's PyTorch flavor; the bad module names were skipped."""
    result = store.script(FIT.format(at_epoch_end="pass"))
    assert result.returncode == 0, result.stderr
    assert "WARMED ['pytorch']" in result.stdout, result.stdout + result.stderr
    assert "FLUSHED True" in result.stdout, result.stdout
    assert "broken on purpose" not in result.stderr, result.stderr
    _stored_model(store)


def test_a_service_killed_after_its_warm_up_is_replaced_and_warmed_again(
    store: Store,
) -> None:
    """The service is SIGKILLed after the warm-up: the process starts another (warned
    once), which is asked to warm up again, and stores everything once."""
    again = "client.kill_for_tests(); print('AGAIN', warmed_models(), flush=True)"
    result = store.script(FIT.format(at_epoch_end=again), MLHOOKS_STRICT="0")
    assert result.returncode == 0, result.stderr
    assert "WARMED ['pytorch']" in result.stdout, result.stdout + result.stderr
    assert "AGAIN ['pytorch']" in result.stdout, result.stdout + result.stderr
    assert "FLUSHED True" in result.stdout, result.stdout
    _stored_model(store)
