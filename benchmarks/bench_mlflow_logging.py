"""Metric logging into MLflow: mlhooks against MLflow's own ways, side by side.

Run: ``python benchmarks/bench_mlflow_logging.py [--points N] [--mlflow-points M] [--repeats R]``
(needs mlhooks-mlflow installed). Starts one `mlflow server` on 127.0.0.1 and, per
target (a sqlite store, that server), runs each configuration in fresh processes,
alternating, and prints medians:

* ``mlhooks``: ``mlhooks.log_metric`` per point; "enqueued/s" is what the training
  thread sustains, "stored/s" counts until ``mlhooks.flush()`` returned.
* ``client.log_batch``: one ``MlflowClient.log_batch`` call per 1,000 points, the
  fastest MLflow offers; what the writer should at least match.
* ``mlflow sync``: ``mlflow.log_metric`` per point.
* ``mlflow async``: the same with ``mlflow.config.enable_async_logging()``.

MLflow's per-point calls take milliseconds each, so they log ``--mlflow-points``
(default 2,000) instead of ``--points`` (default 100,000); rates are per second.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIGS = ("mlhooks", "client.log_batch", "mlflow sync", "mlflow async")


def measure(config: str, uri: str, points: int) -> dict[str, float]:
    """One measurement, in this process."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    import mlhooks
    from mlhooks_mlflow import MlflowBackend

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"bench-{config}")
    if config == "mlhooks":
        with mlhooks.start_run("bench", backends=[MlflowBackend(tracking_uri=uri)]):
            mlhooks.log_metric("warmup", 0.0)
            assert mlhooks.flush(600)
            start = time.perf_counter()
            for step in range(points):
                mlhooks.log_metric("loss", 0.5, step=step)
            enqueued = time.perf_counter() - start
            assert mlhooks.flush(3600)
            stored = time.perf_counter() - start
        return {"enqueued/s": points / enqueued, "stored/s": points / stored}
    if config == "client.log_batch":
        client = MlflowClient(uri)
        run_id = client.create_run(mlflow.get_experiment_by_name(f"bench-{config}").experiment_id)
        now = int(time.time() * 1000)
        batches = [
            [Metric("loss", 0.5, now, s) for s in range(i, min(i + 1000, points))]
            for i in range(0, points, 1000)
        ]
        start = time.perf_counter()
        for batch in batches:
            client.log_batch(run_id.info.run_id, metrics=batch)
        stored = time.perf_counter() - start
        return {"enqueued/s": points / stored, "stored/s": points / stored}
    if config == "mlflow async":
        mlflow.config.enable_async_logging(True)
    with mlflow.start_run():
        mlflow.log_metric("warmup", 0.0)
        start = time.perf_counter()
        for step in range(points):
            mlflow.log_metric("loss", 0.5, step=step)
        enqueued = time.perf_counter() - start
        if config == "mlflow async":
            mlflow.flush_async_logging()
        stored = time.perf_counter() - start
    return {"enqueued/s": points / enqueued, "stored/s": points / stored}


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1):
                return server, uri
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("mlflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--mlflow-points", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, uri = args.child
        count = args.mlflow_points if config.startswith("mlflow ") else args.points
        print(json.dumps(measure(config, uri, count)))
        return

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-mlflow-"))
    server, server_uri = start_server(root)
    targets = {"sqlite": f"sqlite:///{root / 'bench.db'}", "server": server_uri}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for repeat in range(args.repeats):
            order = CONFIGS if repeat % 2 == 0 else tuple(reversed(CONFIGS))
            for target, uri in targets.items():
                for config in order:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", config, uri,
                         "--points", str(args.points), "--mlflow-points", str(args.mlflow_points)],
                        check=True, capture_output=True, text=True, cwd=root,
                    ).stdout  # fmt: skip
                    results.setdefault((target, config), []).append(
                        json.loads(out.strip().splitlines()[-1])
                    )
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)

    print(f"median of {args.repeats} fresh processes per cell, threads pinned to 1")
    header = ("target", "config", "enqueued/s", "stored/s", "stored vs log_batch")
    print(f"{header[0]:<8} {header[1]:<18} {header[2]:>12} {header[3]:>12} {header[4]:>20}")
    for target in targets:
        reference = statistics.median(r["stored/s"] for r in results[(target, "client.log_batch")])
        for config in CONFIGS:
            runs = results[(target, config)]
            enqueued = statistics.median(r["enqueued/s"] for r in runs)
            stored = statistics.median(r["stored/s"] for r in runs)
            print(
                f"{target:<8} {config:<18} {enqueued:>12,.0f} {stored:>12,.0f} "
                f"{stored / reference:>19.2f}x"
            )


if __name__ == "__main__":
    main()
