"""A fit that says which model it will report (``FitSession.expect_model``; Lightning's
does) has the writer service import what storing that model needs while the fit
trains, once the service may start (at once, as in a Ray Tune trial, or at the fit's
end for a lone fit): its end then waits only for the save, not for seconds of
imports. Bad input (a module that fails to import in the service, a name that is no
module, a module the training process never imported) and a service killed after the
warm-up change nothing that is stored."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SERVICE, Store

FIT = """
    import os, sys, time
    from pathlib import Path
    import lightning.pytorch as L
    import torch
    import mlhooks
    import mlhooks.plugin
    from mlhooks.delivery import service_client
    from mlhooks.delivery.service_client import client

    # a module that imports here and raises in the service (another process)
    Path("broken_for_mlhooks.py").write_text(
        f"import os; assert os.getpid() == {{os.getpid()}}, 'broken in the service'"
    )
    Path("fine_for_mlhooks.py").write_text("VALUE = 1")
    sys.path.insert(0, ".")
    import broken_for_mlhooks, fine_for_mlhooks
    mlhooks.autolog()
    {start}
    # bad input, each skipped: the broken module, a name that is no module, a module
    # this process never imported (the service must not run code the user did not)
    # (and one that imports, after them: each is tried on its own)
    service_client.expect_model(
        "pytorch", ["broken_for_mlhooks", "not a module!", "this", "fine_for_mlhooks"]
    )

    def warmed(flavor="pytorch"):
        deadline = time.monotonic() + 240
        while flavor not in client.describe()["warmed_models"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        found = client.describe()["warmed_models"].get(flavor, {{}})
        return sorted(found.get("prepared", [])), sorted(found.get("imported", []))

    def ready():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            prepared, imported = warmed()
            if "lightning.pytorch.core.module" in imported:
                break
            time.sleep(0.05)
        framework = ("lightning.pytorch.core.module", "torch.nn.modules.module")
        return prepared, *(name in imported for name in framework)

    class AtFirstEpochEnd(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 0:
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
    print("AFTER", ready(), flush=True)
    imported = warmed()[1]
    print("BROKEN", "broken_for_mlhooks" in imported, "this" in imported, flush=True)
    print("FINE", "fine_for_mlhooks" in imported, flush=True)
"""

AT_ONCE = "mlhooks.plugin.start_writer_service_now()  # as a Ray Tune trial does"
READY = "print('READY', ready(), flush=True)"
READY_LINE = "READY (['mlflow'], True, True)"
"""While the fit trains: MLflow prepared, Lightning's and torch's modules imported."""

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


def _check(result: Any) -> None:
    assert result.returncode == 0, result.stderr
    assert "FLUSHED True" in result.stdout, result.stdout
    assert "AFTER (['mlflow'], True, True)" in result.stdout, result.stdout + result.stderr
    assert "BROKEN False False" in result.stdout, result.stdout
    assert "FINE True" in result.stdout, result.stdout


MOVED = "; os.makedirs('elsewhere'); os.chdir('elsewhere')"
"""After ``autolog()`` started the service: a service started as the process was then
no longer fits it, and is replaced at first use (by one told the expected models)."""


@pytest.mark.parametrize("moved", [False, True], ids=["", "working-directory-changed"])
def test_the_service_makes_ready_for_the_fits_model_while_it_trains(
    store: Store, moved: bool
) -> None:
    """With the service started at once, by the end of the first epoch (of three) it
    prepared MLflow for the model and imported Lightning's and torch's modules; the
    bad names were skipped; the model is stored once and loads."""
    start = AT_ONCE + (MOVED if moved else "")
    result = store.script(FIT.format(start=start, at_epoch_end=READY))
    assert READY_LINE in result.stdout, result.stdout + result.stderr
    _check(result)
    _stored_model(store)


def test_a_lone_fit_warms_up_beside_its_model_save(store: Store) -> None:
    """Without ``start_writer_service_now`` the service holds back while the fit trains
    (``MLHOOKS_SERVICE_DEFER=600``): the warm-up and the model's save both start at the
    flush (which then waits for both) and the model is stored once."""
    result = store.script(
        FIT.format(start="pass", at_epoch_end="pass"), MLHOOKS_SERVICE_DEFER="600"
    )
    _check(result)
    _stored_model(store)


def test_a_service_killed_after_its_warm_up_is_replaced_and_warmed_again(
    store: Store,
) -> None:
    """The service is SIGKILLed after the warm-up: the process starts another (warned
    once), which is asked to warm up again, and stores everything once."""
    again = (
        f"{READY}; old = client.kill_for_tests()\n"
        "                while client.describe()['pid'] in (None, old):\n"
        "                    time.sleep(0.05)\n"
        "                print('AGAIN', ready(), flush=True)"
    )
    result = store.script(FIT.format(start=AT_ONCE, at_epoch_end=again), MLHOOKS_STRICT="0")
    assert READY_LINE in result.stdout, result.stdout + result.stderr
    assert "AGAIN (['mlflow'], True, True)" in result.stdout, result.stdout + result.stderr
    _check(result)
    _stored_model(store)
