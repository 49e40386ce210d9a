"""XGBoost training with no logging, with ``mlflow.xgboost.autolog()`` and with
``mlhooks.autolog()``, side by side.

Run: ``python benchmarks/bench_xgboost.py [--repeats R] [--rounds N] [--rows M]``
(needs xgboost, mlflow and mlhooks-mlflow + mlhooks-xgboost installed). Each
measurement is a fresh process that builds the same data (``--rows`` x 20 float32 for
training, a quarter of that for validation), then times one
``xgboost.train(..., num_boost_round=N, evals=[(train), (valid)])`` with two metrics,
``nthread=1``, all logging options at their defaults (metrics every round, params,
datasets, the model, feature importance). The three configurations alternate, in
reverse order every other repetition; medians are printed with the overhead against no
logging, for wall time and for the CPU time of the training thread itself (which
other load on the machine does not inflate). "mlhooks.autolog 2nd fit" times a fit in
a process that already tracked one, as every fit after the first is. Each process
writes to its own existing (tables created beforehand), empty sqlite MLflow store and
exits without an explicit flush; the parent then checks that every round's points
were stored by exit and reports how long the process took from the end of ``train`` to
its exit.
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

CONFIGS = ("no logging", "mlflow.xgboost.autolog", "mlhooks.autolog", "mlhooks.autolog 2nd fit")
METRICS = ("logloss", "error")
EVALS = ("train", "valid")
FEATURES = 20


def measure(config: str, rounds: int, rows: int) -> dict[str, float]:
    """One measurement, in this process."""
    import numpy as np

    if config == "mlflow.xgboost.autolog":
        import mlflow

        mlflow.xgboost.autolog()
    elif config.startswith("mlhooks.autolog"):
        import mlhooks

        mlhooks.autolog()
    import xgboost as xgb

    rng = np.random.default_rng(42)
    X = rng.normal(size=(rows + rows // 4, FEATURES)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) + rng.normal(scale=1.0, size=len(X)) > 0).astype(np.float32)
    dtrain = xgb.DMatrix(X[:rows], label=y[:rows])
    dvalid = xgb.DMatrix(X[rows:], label=y[rows:])
    params = {"objective": "binary:logistic", "eval_metric": list(METRICS), "nthread": 1,
              "max_depth": 6, "eta": 0.1, "tree_method": "hist", "seed": 0}  # fmt: skip
    if config.endswith("2nd fit"):  # the process already tracked a fit (a small one)
        xgb.train(params, dvalid, 10, evals=[(dvalid, "valid")], verbose_eval=False)
    start, cpu = time.perf_counter(), time.thread_time()
    xgb.train(params, dtrain, rounds, evals=[(dtrain, "train"), (dvalid, "valid")],
              verbose_eval=False)  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.rows)))
        return

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-xgboost-"))
    results: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    checks: dict[str, list[str]] = {config: [] for config in CONFIGS}
    for repeat in range(args.repeats):
        order = CONFIGS if repeat % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            folder = root / f"{repeat}-{CONFIGS.index(config)}"
            folder.mkdir()
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            if config != "no logging":
                create_store(uri)
            env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLHOOKS_LOCAL_DIR": str(folder)}
            done = subprocess.run(
                [sys.executable, __file__, "--child", config, "--rounds", str(args.rounds),
                 "--rows", str(args.rows)],
                check=True, capture_output=True, text=True, cwd=folder, env=env,
            )  # fmt: skip
            exited = time.time()
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["exit_s"] = exited - result.pop("train_end")
            results[config].append(result)
            if config != "no logging":
                checks[config].append(stored_rounds(uri, args.rounds))

    base = statistics.median(r["train_s"] for r in results["no logging"])
    print(
        f"xgboost.train, {args.rounds} rounds, {args.rows:,} x {FEATURES} + {args.rows // 4:,} "
        f"validation rows, 2 eval sets x 2 metrics, nthread=1; median of {args.repeats} "
        "fresh processes, alternating"
    )
    base_cpu = statistics.median(r["thread_cpu_s"] for r in results["no logging"])
    header = ("config", "train() s", "vs none", "thread CPU s", "vs none", "end->exit s",
              "rounds stored by exit")  # fmt: skip
    print(
        f"{header[0]:<26} {header[1]:>9} {header[2]:>8} {header[3]:>12} {header[4]:>8} "
        f"{header[5]:>11}  {header[6]}"
    )
    for config in CONFIGS:
        runs = results[config]
        train = statistics.median(r["train_s"] for r in runs)
        cpu = statistics.median(r["thread_cpu_s"] for r in runs)
        exit_s = statistics.median(r["exit_s"] for r in runs)
        stored = ", ".join(sorted(set(checks[config]))) or "-"
        print(
            f"{config:<26} {train:>9.3f} {(train / base - 1) * 100:>+7.1f}% {cpu:>12.3f} "
            f"{(cpu / base_cpu - 1) * 100:>+7.1f}% {exit_s:>11.2f}  {stored}"
        )


if __name__ == "__main__":
    main()
