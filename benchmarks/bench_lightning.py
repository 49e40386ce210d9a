"""A Lightning fit with no logging, with ``mlflow.pytorch.autolog()`` and with
``mlhooks.autolog()``, side by side.

Run: ``python benchmarks/bench_lightning.py [--repeats R] [--epochs E] [--configs ...]`` (needs
torch, lightning, mlflow, mlhooks-mlflow and mlhooks-lightning installed).

The fit: a 20 -> 64 -> 1 MLP, 20,000 samples in batches of 64 (313 steps an epoch),
10 epochs, ``train_loss`` logged every step (``log_every_n_steps=1``) and ``val_loss``
every epoch over 2,000 samples; Lightning's default checkpointing on. Each
configuration runs in a fresh process, alternating, ``--repeats`` times (default 5),
with every thread pool pinned to one thread; the medians are printed with their ratio
to no logging.

The sqlite store is created before the clock starts (as a team's store exists before
a fit): creating MLflow's tables takes seconds of CPU that neither tool should be
charged for. "fit" is the wall time of ``trainer.fit`` (what the training script waits for);
"stored" adds the time until everything is in the sqlite store (``mlhooks.flush()``;
MLflow's autolog stores everything before ``fit`` returns). Each tracked process then
checks that every step's ``train_loss``, every ``val_loss`` and the model were stored.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = ("no logging", "mlflow.pytorch.autolog", "mlhooks.autolog")
SAMPLES, VAL_SAMPLES, FEATURES, HIDDEN, BATCH = 20_000, 2_000, 20, 64, 64


def mlp_class() -> type:
    """The module, defined at import time of ``__main__`` so that pickle finds it."""
    global MLP
    import lightning.pytorch as L
    import torch

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: list[torch.Tensor], index: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    MLP.__qualname__ = "MLP"
    return MLP


def measure(config: str, epochs: int, folder: str) -> dict[str, float]:
    """One fit of ``config`` in this process; its timings."""
    import lightning.pytorch as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    uri = f"sqlite:///{folder}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if config != "no logging":  # an existing store: creating its tables is not the fit's cost
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments()

    MLP = mlp_class()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES + VAL_SAMPLES, FEATURES, generator=generator)
    y = x @ torch.randn(FEATURES, 1, generator=generator) + 0.1 * torch.randn(
        SAMPLES + VAL_SAMPLES, 1, generator=generator
    )
    train = DataLoader(
        TensorDataset(x[:SAMPLES], y[:SAMPLES]), batch_size=BATCH, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    val = DataLoader(TensorDataset(x[SAMPLES:], y[SAMPLES:]), batch_size=BATCH)

    if config == "mlflow.pytorch.autolog":
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.pytorch.autolog(log_every_n_step=1, silent=True)
    elif config == "mlhooks.autolog":
        import mlhooks

        mlhooks.autolog()

    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(MLP(), train, val)
    fit = time.perf_counter() - start
    if config == "mlhooks.autolog":
        assert mlhooks.flush(600)
    stored = time.perf_counter() - start
    if config != "no logging":
        check_stored(uri, trainer.global_step, epochs)
    return {"fit": fit, "stored": stored}


def check_stored(uri: str, steps: int, epochs: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    train = client.get_metric_history(run.info.run_id, "train_loss")
    val = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(train) == steps, f"{len(train)} train_loss points for {steps} steps"
    assert len(val) == epochs, f"{len(val)} val_loss points for {epochs} epochs"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    if "model" not in names:  # MLflow 3 keeps autologged models as logged models
        found = client.search_logged_models([run.info.experiment_id])
        names |= {m.name for m in found if m.source_run_id == run.info.run_id}
    assert "model" in names, f"no model among {names}"


def run_fresh(config: str, epochs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-lightning-") as folder:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", config, "--epochs", str(epochs),
             "--folder", folder],
            capture_output=True, text=True, check=False, cwd=folder,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS),
        help="comma-separated configurations to run (default: all three)",
    )  # fmt: skip
    parser.add_argument("--worker", choices=CONFIGS)
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.epochs, args.folder)))
        return
    configs = tuple(c.strip() for c in args.configs.split(","))
    unknown = set(configs) - set(CONFIGS)
    if unknown or "no logging" not in configs:
        parser.error(f"--configs: choose among {CONFIGS}, 'no logging' included")
    results: dict[str, list[dict[str, float]]] = {config: [] for config in configs}
    for repeat in range(args.repeats):
        order = configs if repeat % 2 == 0 else tuple(reversed(configs))
        for config in order:
            results[config].append(run_fresh(config, args.epochs))
            print(f"  {repeat + 1}/{args.repeats} {config}: {results[config][-1]}", flush=True)
    base = statistics.median(r["fit"] for r in results["no logging"])
    print(f"\nLightning fit, {args.epochs} epochs, median of {args.repeats} fresh processes")
    print("| config | fit s | vs no logging | paired | fit + stored s | vs no logging |")
    print("|---|---:|---:|---:|---:|---:|")
    for config in configs:
        fit = statistics.median(r["fit"] for r in results[config])
        stored = statistics.median(r["stored"] for r in results[config])
        pairs = zip(results[config], results["no logging"], strict=True)
        paired = statistics.median(r["fit"] / none["fit"] for r, none in pairs)
        print(
            f"| {config} | {fit:.2f} | {fit / base:.3f}x | {paired:.3f}x | {stored:.2f} "
            f"| {stored / base:.3f}x |"
        )
    print(
        "\n'vs no logging' divides the medians; 'paired' is the median of the ratios of "
        "runs made one after the other (same repetition), less sensitive to the machine "
        "slowing down or speeding up over the whole benchmark."
    )


if __name__ == "__main__":
    main()
