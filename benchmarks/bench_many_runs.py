"""Many small runs: how many runs a second the MLflow backend stores (issue 13, repro 14).

Run: ``python benchmarks/bench_many_runs.py [--repeats 5] [--fits 500] [--mlflow-fits 10]``
(needs mlhooks-mlflow and mlhooks-sklearn installed). A script fits ``LogisticRegression``
on the iris data in a loop, one run per fit, into a fresh sqlite MLflow store, in fresh
processes, the configurations alternating (their order rotates every repetition),
threads pinned to 1:

* ``none``: no logging;
* ``mlflow.autolog``: ``mlflow.sklearn.autolog()`` (models on, its default), fewer fits
  (``--mlflow-fits``): each takes seconds;
* ``mlhooks``: ``mlhooks.autolog()`` with the MLflow backend (models on).

"training" is the wall time of the loop per fit, "CPU" the training thread's CPU time
per fit, "stored" the time per fit until every run is in the store (``mlhooks.flush()``;
MLflow's autologging writes on the training thread). "runs/s" is fits / stored time:
for mlhooks, what its MLflow writer sustains while the loop runs and after it. Each
process checks that every run was stored. "paired" ratios divide the two processes of
one repetition before taking the median, so that a machine that slows down over the
benchmark does not skew them.

``--breakdown`` times each operation of the MLflow backend (on the writer thread) in
the mlhooks processes and prints milliseconds per run by kind of operation.
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
from collections import defaultdict
from pathlib import Path
from typing import Any

CONFIGS = ("none", "mlflow.autolog", "mlhooks")


def _time_backend_operations() -> dict[str, list[float]]:
    """Seconds spent in each MLflow backend operation, by kind, from now on."""
    from mlhooks_mlflow.backend import MlflowBackend

    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    apply = MlflowBackend.apply

    def timed(self: Any, op: Any) -> None:
        start = time.perf_counter()
        try:
            apply(self, op)
        finally:
            entry = spent[type(op).__name__]
            entry[0] += time.perf_counter() - start
            entry[1] += 1

    MlflowBackend.apply = timed  # type: ignore[method-assign]
    return spent


def _count_runs() -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments, max_results=50_000))


def measure(config: str, fits: int, breakdown: bool) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.tracking.MlflowClient().search_experiments()  # creates the store's tables
    X, y = load_iris(return_X_y=True)
    spent = None
    if config == "mlflow.autolog":
        mlflow.sklearn.autolog()
    elif config == "mlhooks":
        import mlhooks

        if breakdown:
            spent = _time_backend_operations()
        mlhooks.autolog()
    LogisticRegression(max_iter=200).fit(X, y)  # warm-up: imports, a first model saved
    if config == "mlhooks":
        assert mlhooks.flush(3600)
        if spent is not None:
            spent.clear()  # the runs of the loop only
    start, cpu_start = time.perf_counter(), time.thread_time()
    for i in range(fits):
        LogisticRegression(max_iter=200, C=1.0 + i / fits).fit(X, y)
    training, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    if config == "mlhooks":
        assert mlhooks.flush(3600), "mlhooks did not flush within an hour"
    stored = time.perf_counter() - start
    runs = _count_runs()
    if config != "none":
        assert runs == fits + 1, f"{runs} runs stored of {fits + 1}"
    result: dict[str, Any] = {
        "training": training / fits,
        "cpu": cpu / fits,
        "stored": stored / fits,
        "runs_per_s": fits / stored,
        "runs": runs,
    }
    if spent is not None:
        result["breakdown"] = {kind: [s, n] for kind, (s, n) in spent.items()}
    return result


def run_child(config: str, fits: int, breakdown: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-many-runs-") as folder:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(folder) / 'mlflow.db'}",
            "MLHOOKS_LOCAL_DIR": str(Path(folder) / "mlhooks-runs"),
        }
        command = [sys.executable, __file__, "--child", config, str(fits)]
        if breakdown:
            command.append("--breakdown")
        done = subprocess.run(
            command, env=env, cwd=folder, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fits", type=int, default=500)
    parser.add_argument("--mlflow-fits", type=int, default=10)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="a subset, with none")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "FITS"))
    args = parser.parse_args()
    if args.child:
        config, fits = args.child
        print(json.dumps(measure(config, int(fits), args.breakdown)))
        return
    configs = tuple(c for c in CONFIGS if c in args.configs.split(","))
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for repeat in range(args.repeats):
        turn = repeat % len(configs)
        for config in configs[turn:] + configs[:turn]:
            fits = args.mlflow_fits if config == "mlflow.autolog" else args.fits
            samples[config].append(run_child(config, fits, args.breakdown))
            shown = {k: v for k, v in samples[config][-1].items() if k != "breakdown"}
            print(f"  {config} #{repeat}: {shown}", file=sys.stderr)
    report(samples, args.fits)


def report(samples: dict[str, list[dict[str, Any]]], fits: int) -> None:
    def median(config: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[config])

    def paired(config: str, key: str) -> float:
        return statistics.median(
            s[key] / b[key] for s, b in zip(samples[config], samples["none"], strict=True)
        )

    print(f"\n{fits} LogisticRegression fits on iris, one run each, into sqlite")
    print(f"(median of {len(samples['none'])} fresh processes per configuration)\n")
    print(
        "| config | training (ms per fit) | CPU (ms per fit) | stored (ms per fit) "
        "| runs/s stored | training / none | paired | stored / none | paired |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config in samples:
        training, cpu, stored = (median(config, k) * 1000 for k in ("training", "cpu", "stored"))
        print(
            f"| {config} | {training:.2f} | {cpu:.2f} | {stored:.2f} | "
            f"{median(config, 'runs_per_s'):.1f} | "
            f"{median(config, 'training') / median('none', 'training'):.2f}x | "
            f"{paired(config, 'training'):.2f}x | "
            f"{median(config, 'stored') / median('none', 'stored'):.2f}x | "
            f"{paired(config, 'stored'):.2f}x |"
        )
    tracked = [s for s in samples.get("mlhooks", []) if "breakdown" in s]
    if tracked:
        print("\nMLflow backend, ms per run by operation (median over processes):\n")
        print("| operation | calls per run | ms per run |")
        print("|---|---:|---:|")
        kinds = sorted({kind for s in tracked for kind in s["breakdown"]})
        rows = []
        for kind in kinds:
            per_run = [s["breakdown"][kind][0] * 1000 / fits for s in tracked]
            calls = [s["breakdown"][kind][1] / fits for s in tracked]
            rows.append((statistics.median(per_run), kind, statistics.median(calls)))
        for ms, kind, calls in sorted(rows, reverse=True):
            print(f"| {kind} | {calls:.1f} | {ms:.1f} |")
        total = statistics.median(
            sum(s for s, _ in sample["breakdown"].values()) * 1000 / fits for sample in tracked
        )
        print(f"| all | | {total:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
