"""What the tests' trials run, in Ray worker processes. This module is shipped to the
workers by value (``register_pickle_by_value``): they cannot import the tests' folder.

The driver's ``autolog()`` alone tracks these trainables: none calls mlhooks (but one,
when its config says so, to show that it does no harm). Each trial writes down, for the
test to check, which local store folder its worker used and what mlhooks put there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

WORKER_DIRS = "MLHOOKS_RAY_TEST_WORKER_DIRS"
"""Where each worker process gets a local store folder of its own (set for the cluster)."""
SEEN = "MLHOOKS_RAY_TEST_SEEN"
"""Where trials write down what they saw (a config key, per test)."""

rng = np.random.default_rng(0)
X = rng.normal(size=(240, 4))
Y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.3, size=240)


def own_local_dir() -> None:
    """Ray's ``worker_process_setup_hook``: this worker's own ``MLHOOKS_LOCAL_DIR``, as a
    worker on another machine would have."""
    base = os.environ.get(WORKER_DIRS)
    if base:
        os.environ["MLHOOKS_LOCAL_DIR"] = str(Path(base, f"worker-{os.getpid()}"))


def write_down(config: dict[str, Any], **seen: Any) -> None:
    """Record, for the test, what this trial saw of its worker."""
    folder = config.get("seen")
    if folder:
        local = os.environ.get("MLHOOKS_LOCAL_DIR", "")
        listing = sorted(os.listdir(local)) if local and os.path.isdir(local) else []
        record = {"pid": os.getpid(), "local_dir": local, "local_dir_holds": listing, **seen}
        Path(folder, f"{config['alpha']}.json").write_text(json.dumps(record))


def ridge(config: dict[str, Any]) -> None:
    """A scikit-learn fit, then three validation folds reported one by one. With
    ``autolog_too``, the trainable calls ``mlhooks.autolog()`` itself as well."""
    from sklearn.linear_model import Ridge

    if config.get("autolog_too"):
        import mlhooks

        mlhooks.autolog()
    model = Ridge(alpha=config["alpha"]).fit(X[:150], Y[:150])
    scores = []
    for fold in range(3):
        rows = slice(150 + 30 * fold, 180 + 30 * fold)
        scores.append(float(model.score(X[rows], Y[rows])))
        tune.report({"fold_r2": scores[-1], "mean_r2": float(np.mean(scores))})
    write_down(config)


def failing(config: dict[str, Any]) -> None:
    """Reports a step, then fails as the config says: an exception, or a dead worker."""
    tune.report({"loss": float(config["alpha"])})
    write_down(config)
    if config["fail"] == "raise":
        raise ValueError("a bad region of the search space")
    if config["fail"] == "die":
        os._exit(1)  # the worker process dies: nothing of mlhooks' runs after this
    tune.report({"loss": float(config["alpha"]) / 2})


def lightning_mlp(config: dict[str, Any]) -> None:
    """A tiny Lightning MLP on generated data, two epochs, its validation loss reported
    to Tune after each epoch."""
    import lightning.pytorch as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    torch.set_num_threads(1)

    class MLP(L.LightningModule):
        def __init__(self, hidden: int, lr: float) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)
            self.log("val_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    class ReportToTune(L.Callback):
        def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
            if not trainer.sanity_checking:
                tune.report({"tune_val_loss": float(trainer.callback_metrics["val_loss"])})

    tensors = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    train = DataLoader(TensorDataset(tensors[0][:180], tensors[1][:180]), batch_size=60)
    valid = DataLoader(TensorDataset(tensors[0][180:], tensors[1][180:]), batch_size=60)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[ReportToTune()],
    )
    trainer.fit(MLP(config["hidden"], config["lr"]), train, valid)


class RidgeSteps(tune.Trainable):
    """A class trainable: each step fits a Ridge on more rows and returns its score;
    with ``done_at`` in its config, it says it is done at that step."""

    def setup(self, config: dict[str, Any]) -> None:
        self.alpha = config["alpha"]
        self.done_at = config.get("done_at")
        self.rows = 60

    def step(self) -> dict[str, Any]:
        from sklearn.linear_model import Ridge

        self.rows += 30
        model = Ridge(alpha=self.alpha).fit(X[: self.rows], Y[: self.rows])
        result = {"r2": float(model.score(X[200:], Y[200:])), "rows": self.rows}
        if self.done_at is not None and self.iteration + 1 >= self.done_at:
            result["done"] = True
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:  # Tune saves one at the end
        Path(checkpoint_dir, "rows").write_text(str(self.rows))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.rows = int(Path(checkpoint_dir, "rows").read_text())


def returning(config: dict[str, Any]) -> dict[str, float]:
    """Reports one value, then returns another: Tune reports what a function returns."""
    tune.report({"score": 1.0})
    return {"score": 2.0}


def counting(config: dict[str, Any]) -> None:
    """The contract's trainable: two steps, no framework."""
    for step in range(2):
        tune.report({"x": config["a"] * 10 + step})
