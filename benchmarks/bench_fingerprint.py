"""Time ``mlhooks.capture.datasets.fingerprint`` on 10M-row data (target: under 20 ms each).

Run with ``python benchmarks/bench_fingerprint.py``; prints the median of several runs.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlhooks.capture.datasets import fingerprint

ROWS = 10_000_000
REPEATS = 15
TARGET_MS = 20.0


def median_ms(data: Any) -> float:
    """Median wall time of ``fingerprint(data)`` in milliseconds, after one warm-up."""
    fingerprint(data)
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fingerprint(data)
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> int:
    """Build the datasets, time them, and return 1 if any misses the target."""
    rng = np.random.default_rng(0)
    array = rng.standard_normal((ROWS, 1))
    frame = pd.DataFrame(rng.standard_normal((ROWS, 3)), columns=["a", "b", "c"])
    slow = False
    for label, data in (("numpy 10M x 1 float64", array), ("DataFrame 10M x 3 float64", frame)):
        elapsed = median_ms(data)
        slow |= elapsed >= TARGET_MS
        verdict = "ok" if elapsed < TARGET_MS else "SLOW"
        print(f"{label:<28} median {elapsed:7.3f} ms  (target < {TARGET_MS:g} ms: {verdict})")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
