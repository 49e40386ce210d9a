"""How fast the training thread enqueues metric points, and how fast they are stored.

Run: ``python benchmarks/bench_throughput.py [--points N] [--repeats R]``

Each measurement runs in a fresh process (threads pinned to 1), the configurations
alternate, and the table gives medians over ``--repeats`` processes:

* ``log_metric``: one point per call, the worst case of manual logging.
* ``log_metrics x10``: ten keys per call, as a training step logs them.
* ``FitSession x10``: the autologging path (sanitizing) with ten keys per step.
* ``local store``: LogBatch operations written straight to the local store, no queue.

"enqueued/s" is what the training thread sustains while the writer runs beside it;
"stored/s" counts from the first point until ``flush()`` returned.
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

CONFIGS = ("log_metric", "log_metrics x10", "FitSession x10", "local store")


def measure(config: str, points: int) -> dict[str, float]:
    """One measurement, in this process."""
    import mlhooks
    from mlhooks.backends import LogBatch
    from mlhooks.backends.local import LocalBackend
    from mlhooks.core.types import Metric, RunInfo

    root = tempfile.mkdtemp(prefix="mlhooks-bench-")
    backend = LocalBackend(root)
    if config == "local store":
        backend.start_run(RunInfo(run_id="bench", name="bench"))
        batches = [
            LogBatch("bench", [Metric("loss", 0.5, s, 0) for s in range(i, i + 1000)])
            for i in range(0, points, 1000)
        ]
        start = time.perf_counter()
        for batch in batches:
            backend.log_batch(batch)
        backend.flush()
        elapsed = time.perf_counter() - start
        return {"enqueued/s": float("nan"), "stored/s": points / elapsed}

    keys = [f"metric_{k}" for k in range(10)]
    with mlhooks.start_run("bench", backends=[backend]):
        mlhooks.log_metric("warmup", 0.0)
        start = time.perf_counter()
        if config == "log_metric":
            for step in range(points):
                mlhooks.log_metric("loss", 0.5, step=step)
        elif config == "log_metrics x10":
            for step in range(points // 10):
                mlhooks.log_metrics(dict.fromkeys(keys, 0.5), step=step)
        else:
            session = mlhooks.plugin.FitSession("bench", "bench")
            session.start()
            for step in range(points // 10):
                session.log_metrics(dict.fromkeys(keys, 0.5), step=step)
            session.end()
        enqueued = time.perf_counter() - start
        assert mlhooks.flush(600)
        stored = time.perf_counter() - start
    return {"enqueued/s": points / enqueued, "stored/s": points / stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.points)))
        return

    results: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    for repeat in range(args.repeats):
        for config in CONFIGS if repeat % 2 == 0 else reversed(CONFIGS):
            out = subprocess.run(
                [sys.executable, __file__, "--child", config, "--points", str(args.points)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[config].append(json.loads(out.strip().splitlines()[-1]))

    print(f"{args.points:,} points, median of {args.repeats} fresh processes, threads pinned to 1")
    print(f"{'path':<18} {'enqueued/s':>12} {'stored/s':>12}")
    for config, runs in results.items():
        enqueued = statistics.median(r["enqueued/s"] for r in runs)
        stored = statistics.median(r["stored/s"] for r in runs)
        shown = "-" if enqueued != enqueued else f"{enqueued:,.0f}"
        print(f"{config:<18} {shown:>12} {stored:>12,.0f}")


if __name__ == "__main__":
    main()
