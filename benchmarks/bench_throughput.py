"""How fast the training thread enqueues metric points, and how fast they are stored.

Run: ``python benchmarks/bench_throughput.py [--points N] [--repeats R]``

Each measurement runs in a fresh process (threads pinned to 1), the configurations
alternate, and the table gives medians over ``--repeats`` processes:

* ``log_metric``: one point per call, the worst case of manual logging.
* ``log_metrics x10``: ten keys per call, as a training step logs them.
* ``FitSession x10``: the autologging path (sanitizing) with ten keys per step.
* ``local store``: LogBatch operations written straight to the local store, no queue.

"enqueued/s" is what the training thread sustains while the writer runs beside it;
"stored/s" counts from the first point until ``flush()`` returned. Each path through
the queue runs with the write-ahead journal on (the default) and off
(``MLHOOKS_JOURNAL=0``), alternating, and the last column is the median of the paired
ratios of stored/s (on / off) within each repeat.
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

    cells = [(config, journal) for config in CONFIGS for journal in ("1", "0")]
    cells = [(c, j) for c, j in cells if not (c == "local store" and j == "0")]
    results: dict[tuple[str, str], list[dict[str, float]]] = {cell: [] for cell in cells}
    for repeat in range(args.repeats):
        for config, journal in cells if repeat % 2 == 0 else reversed(cells):
            out = subprocess.run(
                [sys.executable, __file__, "--child", config, "--points", str(args.points)],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "MLHOOKS_JOURNAL": journal},
            ).stdout
            results[config, journal].append(json.loads(out.strip().splitlines()[-1]))

    print(f"{args.points:,} points, median of {args.repeats} fresh processes, threads pinned to 1")
    print(f"{'path':<18} {'journal':>8} {'enqueued/s':>12} {'stored/s':>12} {'stored on/off':>14}")
    for (config, journal), runs in results.items():
        enqueued = statistics.median(r["enqueued/s"] for r in runs)
        stored = statistics.median(r["stored/s"] for r in runs)
        shown = "-" if enqueued != enqueued else f"{enqueued:,.0f}"
        ratio = ""
        if journal == "1" and (config, "0") in results:
            pairs = zip(runs, results[config, "0"], strict=True)
            ratio = (
                f"{statistics.median(on['stored/s'] / off['stored/s'] for on, off in pairs):.2f}"
            )
        label = "-" if config == "local store" else ("on" if journal == "1" else "off")
        print(f"{config:<18} {label:>8} {shown:>12} {stored:>12,.0f} {ratio:>14}")


if __name__ == "__main__":
    main()
