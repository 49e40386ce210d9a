"""A Ray Tune sweep with no logging, with Ray's own ``MLflowLoggerCallback``, and with
``mlhooks.autolog()`` called once in the driver, side by side: what lands in MLflow and
the sweep's wall time.

Run: ``python benchmarks/bench_ray_tune.py [--repeats R] [--trials N]`` (needs
``ray[tune]``, scikit-learn, mlflow and mlhooks-mlflow, mlhooks-sklearn and mlhooks-ray
installed). Each measurement is a fresh process that starts a local Ray cluster of 2
CPUs (not timed) and times one ``Tuner.fit()``: N trials (a grid over Ridge's
``alpha``), each a scikit-learn ``Ridge`` fit on generated data and three validation
folds reported with ``tune.report``, 2 trials at a time, each in a worker process of its
own (Tune's default; ``--reuse-actors``: a worker runs trial after trial). Threads are
pinned to 1; the configurations alternate, in reverse order every other repetition;
medians are printed.

* "MLflowLoggerCallback" is ``ray.air.integrations.mlflow.MLflowLoggerCallback``: the
  driver logs each trial as a run (its config as params, every numeric value of every
  result, Tune's own included, at its ``training_iteration``) as results reach it.
* "mlhooks.autolog" is ``mlhooks.autolog()`` in the driver, nothing in the trainable:
  the sweep's run, a child run per trial opened in the trial's worker (config, the
  reported values, status), and the Ridge fit autologged into it (its params, training
  metrics, the scores the trainable computes, the dataset, the model), each worker
  storing its trial's run before the trial ends. "mlhooks.autolog, no models" is the
  same with ``autolog(log_models=False)``: nearer to what the callback logs.

Each process writes to its own existing (tables created beforehand), empty sqlite MLflow
store; the parent reads back what landed once the process exited: runs (and how many
are children of another), params, metric keys and points, models.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = ("no logging", "MLflowLoggerCallback", "mlhooks.autolog", "mlhooks.autolog, no models")


def ridge(config: dict[str, Any]) -> None:
    """The trial: a Ridge fit, then three validation folds reported one by one."""
    import numpy as np
    from ray import tune
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20))
    y = x @ rng.normal(size=20) + rng.normal(scale=0.3, size=2000)
    model = Ridge(alpha=config["alpha"]).fit(x[:1400], y[:1400])
    scores = []
    for fold in range(3):
        rows = slice(1400 + 200 * fold, 1600 + 200 * fold)
        scores.append(float(model.score(x[rows], y[rows])))
        tune.report({"fold_r2": scores[-1], "mean_r2": float(np.mean(scores))})


def measure(config: str, trials: int, folder: Path, reuse_actors: bool) -> dict[str, float]:
    """One measurement, in this process, on a cluster of its own."""
    if config.startswith("mlhooks.autolog"):
        import mlhooks

        mlhooks.autolog(log_models=config == "mlhooks.autolog")
    import ray

    temp = tempfile.mkdtemp(prefix="ray-")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        return sweep(config, trials, folder, reuse_actors)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def sweep(config: str, trials: int, folder: Path, reuse_actors: bool) -> dict[str, float]:
    """The timed ``Tuner.fit()``."""
    from ray import tune

    callbacks = []
    if config == "MLflowLoggerCallback":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ["MLFLOW_TRACKING_URI"]
        callbacks.append(
            MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench", save_artifact=False)
        )
    alphas = [10.0 ** (i - trials // 2) for i in range(trials)]
    tuner = tune.Tuner(
        ridge,
        param_space={"alpha": tune.grid_search(alphas)},
        tune_config=tune.TuneConfig(metric="mean_r2", mode="max", reuse_actors=reuse_actors),
        run_config=tune.RunConfig(
            name="bench", storage_path=str(folder / "ray-results"), verbose=0, callbacks=callbacks
        ),
    )
    start = time.perf_counter()
    results = tuner.fit()
    seconds, ended = time.perf_counter() - start, time.time()
    assert not results.errors, results.errors
    return {"fit_s": seconds, "fit_end": ended}


def landed(uri: str) -> dict[str, int]:
    """What is in the store: runs, child runs, params, metric keys and points, models."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    points = sum(
        len(client.get_metric_history(run.info.run_id, key))
        for run in runs
        for key in run.data.metrics
    )
    models = (
        client.search_logged_models(experiments) if hasattr(client, "search_logged_models") else []
    )
    return {
        "runs": len(runs),
        "children": sum("mlflow.parentRunId" in run.data.tags for run in runs),
        "params": sum(len(run.data.params) for run in runs),
        "metric keys": sum(len(run.data.metrics) for run in runs),
        "points": points,
        "models": len(models),
    }


def create_store(uri: str, folder: Path) -> None:
    """An existing, empty tracking store, as a user's ./mlflow.db is (created in
    ``folder``: its default experiment keeps artifacts in ``folder/mlruns``)."""
    subprocess.run(
        [sys.executable, "-c",
         f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"],
        check=True, capture_output=True, cwd=folder,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument(
        "--reuse-actors", action="store_true", help="one worker process runs several trials"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.trials, Path.cwd(), args.reuse_actors)))
        return

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-ray-"))
    try:
        results, stores = run_all(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(args, results, stores)


def run_all(
    args: argparse.Namespace, root: Path
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[dict[str, int]]]]:
    """Every configuration, ``args.repeats`` times, alternating."""
    results: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    stores: dict[str, list[dict[str, int]]] = {config: [] for config in CONFIGS}
    for repeat in range(args.repeats):
        order = CONFIGS if repeat % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            folder = root / f"{repeat}-{CONFIGS.index(config)}"
            folder.mkdir()
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            if config != "no logging":
                create_store(uri, folder)
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLHOOKS_LOCAL_DIR": str(folder)}
            command = [sys.executable, __file__, "--child", config, "--trials", str(args.trials)]
            if args.reuse_actors:
                command.append("--reuse-actors")
            done = subprocess.run(
                command, check=True, capture_output=True, text=True, cwd=folder, env=env
            )
            exited = time.time()
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["exit_s"] = exited - result.pop("fit_end")
            results[config].append(result)
            if config != "no logging":
                stores[config].append(landed(uri))
    return results, stores


def report(
    args: argparse.Namespace,
    results: dict[str, list[dict[str, float]]],
    stores: dict[str, list[dict[str, int]]],
) -> None:
    """The medians, and what landed (several values when the repetitions differ)."""
    reuse = ", reuse_actors=True" if args.reuse_actors else ""
    print(
        f"Tuner.fit, {args.trials} trials (a Ridge fit, 3 reported steps each), 2 at a time "
        f"on 2 CPUs{reuse}, threads pinned to 1; median of {args.repeats} fresh processes"
    )
    columns = ("runs", "children", "params", "metric keys", "points", "models")
    print(
        f"{'config':<28} {'fit s':>7} {'end->exit s':>11}  " + " ".join(f"{c:>11}" for c in columns)
    )
    for config in CONFIGS:
        fit = statistics.median(r["fit_s"] for r in results[config])
        exit_s = statistics.median(r["exit_s"] for r in results[config])
        counts = stores[config]
        cells = [
            f"{'-' if not counts else '/'.join(sorted({str(c[k]) for c in counts})):>11}"
            for k in columns
        ]
        print(f"{config:<28} {fit:>7.1f} {exit_s:>11.1f}  " + " ".join(cells))


if __name__ == "__main__":
    main()
