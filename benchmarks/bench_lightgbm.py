"""LightGBM training with no logging, with ``mlflow.lightgbm.autolog()`` and with
``mlhooks.autolog()``, side by side.

Run: ``python benchmarks/bench_lightgbm.py [--repeats R] [--rounds N] [--rows M]
[--configs ...]`` (needs lightgbm, mlflow and mlhooks-mlflow + mlhooks-lightgbm
installed). Each measurement is a fresh process that builds the same data (``--rows``
x 20 float32 for training, a quarter of that for validation), then times one
``lightgbm.train(..., num_boost_round=N, valid_sets=[train, valid])`` with two metrics
(``binary_logloss``, ``auc``), ``num_threads=1``, all logging options at their
defaults (metrics every iteration, params, datasets, the model, feature importance,
the run context). The configurations alternate, in reverse order every other
repetition. Printed: medians of ``train()``'s wall time and of the training thread's
own CPU time (``time.thread_time()``, which other load on the machine does not
inflate), each against no logging as a ratio of medians and as the median of the
ratios of one repetition's runs ("paired", made one after the other, so that a machine
slowing down or speeding up over the benchmark does not skew it). Each process writes
to its own existing (tables created beforehand), empty sqlite MLflow store and exits
without an explicit flush; the parent then checks that every iteration's points were
stored by exit and reports how long the process took from the end of ``train`` to its
exit.
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
from pathlib import Path

CONFIGS = ("no logging", "mlflow.lightgbm.autolog", "mlhooks.autolog")
METRICS = ("binary_logloss", "auc")
EVALS = ("train", "valid")
FEATURES = 20


def measure(config: str, rounds: int, rows: int) -> dict[str, float]:
    """One measurement, in this process."""
    import numpy as np

    if config == "mlflow.lightgbm.autolog":
        import mlflow

        mlflow.lightgbm.autolog(silent=True)
    elif config == "mlhooks.autolog":
        import mlhooks

        mlhooks.autolog()
    import lightgbm as lgb

    rng = np.random.default_rng(42)
    X = rng.normal(size=(rows + rows // 4, FEATURES)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) + rng.normal(scale=1.0, size=len(X)) > 0).astype(np.float32)
    dtrain = lgb.Dataset(X[:rows], label=y[:rows])
    dvalid = lgb.Dataset(X[rows:], label=y[rows:], reference=dtrain)
    params = {"objective": "binary", "metric": list(METRICS), "num_threads": 1,
              "num_leaves": 31, "learning_rate": 0.05, "seed": 0, "verbose": -1}  # fmt: skip
    start, cpu = time.perf_counter(), time.thread_time()
    lgb.train(params, dtrain, rounds, valid_sets=[dtrain, dvalid], valid_names=list(EVALS))
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return {"train_s": seconds, "thread_cpu_s": cpu, "train_end": time.time()}


def stored_rounds(uri: str, rounds: int) -> str:
    """ "all N" when every metric of every eval set has steps 0..N-1 in the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    runs = [run for run in runs if run.data.params.get("num_boost_round") == str(rounds)]
    if len(runs) != 1:
        return f"{len(runs)} runs"
    worst = rounds
    for key in (f"{name}-{metric}" for name in EVALS for metric in METRICS):
        steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, key))
        if steps != list(range(rounds)):
            worst = min(worst, len(set(steps) & set(range(rounds))))
    return f"all {rounds}" if worst == rounds else f"only {worst}"


def create_store(uri: str) -> None:
    """An existing, empty tracking store, as a user's ./mlflow.db is (creating the
    tables takes seconds and happens once, not per training)."""
    subprocess.run(
        [sys.executable, "-c",
         f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"],
        check=True, capture_output=True,
        cwd=os.path.dirname(uri.removeprefix("sqlite:///")),  # a new store's ./mlruns
    )  # fmt: skip


def run_fresh(config: str, folder: Path, rounds: int, rows: int) -> tuple[dict[str, float], str]:
    """One measurement in a fresh process writing to its own store; what it stored."""
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if config != "no logging":
        create_store(uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLHOOKS_LOCAL_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", config, "--rounds", str(rounds), "--rows", str(rows)],
        check=False, capture_output=True, text=True, cwd=folder, env=env,
    )  # fmt: skip
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_s"] = exited - result.pop("train_end")
    return result, (stored_rounds(uri, rounds) if config != "no logging" else "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS),
        help="comma-separated configurations to run (default: all three)",
    )  # fmt: skip
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.rows)))
        return
    configs = tuple(c.strip() for c in args.configs.split(","))
    if set(configs) - set(CONFIGS) or "no logging" not in configs:
        parser.error(f"--configs: choose among {CONFIGS}, 'no logging' included")

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-lightgbm-"))
    results: dict[str, list[dict[str, float]]] = {config: [] for config in configs}
    checks: dict[str, list[str]] = {config: [] for config in configs}
    for repeat in range(args.repeats):
        order = configs if repeat % 2 == 0 else tuple(reversed(configs))
        for config in order:
            folder = root / f"{repeat}-{CONFIGS.index(config)}"
            result, stored = run_fresh(config, folder, args.rounds, args.rows)
            results[config].append(result)
            checks[config].append(stored)
            print(f"  {repeat + 1}/{args.repeats} {config}: {result}", flush=True)

    print(
        f"\nlightgbm.train, {args.rounds} iterations, {args.rows:,} x {FEATURES} + "
        f"{args.rows // 4:,} validation rows, 2 eval sets x 2 metrics, num_threads=1; "
        f"median of {args.repeats} fresh processes, alternating"
    )
    print(
        "| config | train() s | vs none | paired | thread CPU s | vs none | paired "
        "| end->exit s | iterations stored by exit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    none = results["no logging"]
    for config in configs:
        runs = results[config]
        row = [config]
        for key in ("train_s", "thread_cpu_s"):
            value = statistics.median(r[key] for r in runs)
            base = statistics.median(r[key] for r in none)
            paired = statistics.median(r[key] / n[key] for r, n in zip(runs, none, strict=True))
            row += [f"{value:.3f}", f"{value / base:.3f}x", f"{paired:.3f}x"]
        row.append(f"{statistics.median(r['exit_s'] for r in runs):.2f}")
        row.append(", ".join(sorted(set(checks[config]))))
        print("| " + " | ".join(row) + " |")
    print(
        "\n'vs none' divides the medians; 'paired' is the median of the ratios of the runs "
        "of one repetition (made one after the other)."
    )


if __name__ == "__main__":
    main()
