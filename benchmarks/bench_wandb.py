"""The W&B backend (offline): metric points stored per second, and the time it adds to
a 300-round XGBoost fit beside MLflow.

Run: ``python benchmarks/bench_wandb.py [--repeats R] [--points N] [--rounds K]``
(needs wandb, xgboost, mlflow, mlhooks-mlflow, mlhooks-xgboost and mlhooks-wandb).
Every measurement is a fresh process with threads pinned to 1, W&B offline in a
folder of its own; configurations alternate, in reverse order every other repetition.

* Throughput: ``backend`` hands ``LogBatch``es of 1,000 points (10 keys x 100 steps)
  straight to ``WandbBackend.log_batch`` and finishes the run; ``log_metrics x10``
  logs ten keys per step through mlhooks (``start_run(backends="wandb")``) until
  ``flush()`` returned. "stored/s" counts until W&B's SDK took every row; "written/s"
  until W&B's service wrote the finished run file (points read back and counted).
* XGBoost: ``xgboost.train`` of ``--rounds`` rounds (20,000 x 20 rows, two eval sets,
  two metrics, ``nthread=1``) autologged with ``MLHOOKS_BACKENDS=mlflow`` and with
  ``mlflow,wandb`` (and no logging, for scale). Medians of the training call's wall
  time and of the training thread's CPU time, the median of the paired ratios
  (``mlflow,wandb`` / ``mlflow`` within each repetition), how long the process took
  from the end of ``train`` to its exit, and whether every round reached each store.
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

THROUGHPUT = ("backend", "log_metrics x10")
FITS = ("no logging", "mlflow", "mlflow,wandb")
KEYS = [f"metric_{k}" for k in range(10)]
EVALS, METRICS, FEATURES = ("train", "valid"), ("logloss", "error"), 20


def wandb_env(folder: Path) -> dict[str, str]:
    """W&B offline, every folder it writes under ``folder``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder),
        "WANDB_DATA_DIR": str(folder / "data"),
        "WANDB_CACHE_DIR": str(folder / "cache"),
        "WANDB_CONFIG_DIR": str(folder / "config"),
    }


def measure_throughput(config: str, points: int, folder: Path) -> dict[str, float]:
    import mlhooks
    from mlhooks.plugin import EndRun, LogBatch, RunInfo
    from mlhooks_wandb import WandbBackend, reading

    backend = WandbBackend(dir=folder)
    steps = points // len(KEYS)
    if config == "backend":
        run = RunInfo("bench", "bench")
        backend.start_run(run)
        batches = [
            LogBatch("bench", [(k, 0.5, s, 0) for s in range(i, i + 100) for k in KEYS])
            for i in range(0, steps, 100)
        ]
        start = time.perf_counter()
        for batch in batches:
            backend.log_batch(batch)
        stored = time.perf_counter() - start
        backend.end_run(EndRun("bench", "FINISHED", 0))
        run_id, enqueued = run.run_id, float("nan")
    else:
        with mlhooks.start_run("bench", backends=[backend]) as active:
            mlhooks.log_metric("warmup", 0.0)
            assert mlhooks.flush(600)
            start = time.perf_counter()
            for step in range(steps):
                mlhooks.log_metrics(dict.fromkeys(KEYS, 0.5), step=step)
            enqueued = points / (time.perf_counter() - start)
            assert mlhooks.flush(600)
            stored = time.perf_counter() - start
        run_id = active.run_id
    (run_dir,) = reading.run_dirs(folder, run_id)
    assert reading.wait_until_finished(run_dir, 600)
    written = time.perf_counter() - start
    found = reading.load(run_dir)
    assert sum(len(found.points(key)) for key in KEYS) == points, "points missing"
    return {"enqueued/s": enqueued, "stored/s": points / stored, "written/s": points / written}


def measure_fit(config: str, rounds: int, rows: int) -> dict[str, float]:
    import numpy as np

    if config != "no logging":
        import mlhooks

        mlhooks.autolog()  # MLHOOKS_BACKENDS says where
    import xgboost as xgb

    rng = np.random.default_rng(42)
    X = rng.normal(size=(rows + rows // 4, FEATURES)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) + rng.normal(scale=1.0, size=len(X)) > 0).astype(np.float32)
    train, valid = xgb.DMatrix(X[:rows], label=y[:rows]), xgb.DMatrix(X[rows:], label=y[rows:])
    params = {"objective": "binary:logistic", "eval_metric": list(METRICS), "nthread": 1,
              "max_depth": 6, "eta": 0.1, "tree_method": "hist", "seed": 0}  # fmt: skip
    start, cpu = time.perf_counter(), time.thread_time()
    xgb.train(params, train, rounds, evals=[(train, "train"), (valid, "valid")],
              verbose_eval=False)  # fmt: skip
    return {
        "train_s": time.perf_counter() - start,
        "thread_cpu_s": time.thread_time() - cpu,
        "train_end": time.time(),
    }


def rounds_in_mlflow(uri: str, rounds: int) -> bool:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return all(
        sorted(m.step for m in client.get_metric_history(run.info.run_id, f"{e}-{m}"))
        == list(range(rounds))
        for e in EVALS
        for m in METRICS
    )


def rounds_in_wandb(folder: Path, rounds: int) -> bool:
    from mlhooks_wandb import reading

    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    found = reading.load(run_dir)
    return found.exit_code == 0 and all(
        sorted(step for step, _ in found.points(f"{e}-{m}")) == list(range(rounds))
        for e in EVALS
        for m in METRICS
    )


def child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.child in THROUGHPUT:
        result = measure_throughput(args.child, args.points, folder)
    else:
        result = measure_fit(args.child, args.rounds, args.rows)
    print(json.dumps(result))


def run_child(config: str, folder: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--child", config, "--folder", str(folder),
               "--points", str(args.points), "--rounds", str(args.rounds),
               "--rows", str(args.rows)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=folder, env={**os.environ, **env}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_s"] = time.time() - result.pop("train_end", time.time())
    return result


def create_store(uri: str) -> None:
    """An existing, empty tracking store, as a user's is (its tables take seconds)."""
    code = f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"
    # in the store's folder: a new store's artifacts go to ./mlruns
    folder = os.path.dirname(uri.removeprefix("sqlite:///"))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--only", choices=("throughput", "xgboost"), default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-wandb-"))
    if args.only != "xgboost":
        throughput(args, root)
    if args.only != "throughput":
        xgboost_fit(args, root)


def throughput(args: argparse.Namespace, root: Path) -> None:
    results: dict[str, list[dict[str, float]]] = {config: [] for config in THROUGHPUT}
    for repeat in range(args.repeats):
        for config in THROUGHPUT if repeat % 2 == 0 else reversed(THROUGHPUT):
            folder = Path(tempfile.mkdtemp(dir=root))
            env = {**wandb_env(folder), "MLHOOKS_LOCAL_DIR": str(folder / "mlhooks-runs")}
            results[config].append(run_child(config, folder, args, env))
    print(
        f"{args.points:,} points (10 keys per step) into W&B offline, median of "
        f"{args.repeats} fresh processes, threads pinned to 1"
    )
    print(f"{'path':<18} {'enqueued/s':>12} {'stored/s':>12} {'written/s':>12}")
    for config, runs in results.items():
        enqueued = statistics.median(r["enqueued/s"] for r in runs)
        shown = "-" if enqueued != enqueued else f"{enqueued:,.0f}"
        stored = statistics.median(r["stored/s"] for r in runs)
        written = statistics.median(r["written/s"] for r in runs)
        print(f"{config:<18} {shown:>12} {stored:>12,.0f} {written:>12,.0f}")
    print()


def xgboost_fit(args: argparse.Namespace, root: Path) -> None:
    results: dict[str, list[dict[str, float]]] = {config: [] for config in FITS}
    stored: dict[str, set[str]] = {config: set() for config in FITS}
    for repeat in range(args.repeats):
        for config in FITS if repeat % 2 == 0 else reversed(FITS):
            folder = Path(tempfile.mkdtemp(dir=root))
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            env = {**wandb_env(folder), "MLFLOW_TRACKING_URI": uri,
                   "MLHOOKS_LOCAL_DIR": str(folder / "mlhooks-runs")}  # fmt: skip
            if config != "no logging":
                create_store(uri)
                env["MLHOOKS_BACKENDS"] = config
            results[config].append(run_child(config, folder, args, env))
            if config != "no logging":
                checks = [("mlflow", rounds_in_mlflow(uri, args.rounds))]
                if "wandb" in config:
                    checks.append(("wandb", rounds_in_wandb(folder, args.rounds)))
                stored[config].add(", ".join(f"{name} {'all' if ok else 'MISSING'}"
                                             for name, ok in checks))  # fmt: skip

    print(
        f"xgboost.train, {args.rounds} rounds, {args.rows:,} x {FEATURES} + "
        f"{args.rows // 4:,} validation rows, 2 eval sets x 2 metrics, nthread=1; median "
        f"of {args.repeats} fresh processes, alternating"
    )
    header = ("MLHOOKS_BACKENDS", "train() s", "thread CPU s", "vs mlflow", "CPU vs mlflow",
              "end->exit s", "rounds stored by exit")  # fmt: skip
    print(f"{header[0]:<18} {header[1]:>9} {header[2]:>12} {header[3]:>10} {header[4]:>13} "
          f"{header[5]:>11}  {header[6]}")  # fmt: skip
    for config in FITS:
        runs = results[config]
        train = statistics.median(r["train_s"] for r in runs)
        cpu = statistics.median(r["thread_cpu_s"] for r in runs)
        exit_s = statistics.median(r["exit_s"] for r in runs)
        pairs = list(zip(runs, results["mlflow"], strict=True))
        ratio = statistics.median(a["train_s"] / b["train_s"] for a, b in pairs)
        cpu_ratio = statistics.median(a["thread_cpu_s"] / b["thread_cpu_s"] for a, b in pairs)
        print(
            f"{config:<18} {train:>9.3f} {cpu:>12.3f} {ratio:>9.3f}x {cpu_ratio:>12.3f}x "
            f"{exit_s:>11.2f}  {', '.join(sorted(stored[config])) or '-'}"
        )


if __name__ == "__main__":
    main()
