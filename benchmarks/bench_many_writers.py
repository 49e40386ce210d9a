"""Many training processes writing into one team server at once (issue 17, item 2).

Run: ``python benchmarks/bench_many_writers.py [--processes 16] [--points 20000]
[--mlflow-points 500] [--repeats 2] [--single-repeats 3] [--server-workers 2]``
(needs PostgreSQL, as Debian's ``postgresql`` package installs it, and psycopg, besides
mlhooks-mlflow, mlhooks-sklearn and mlhooks-xgboost). The script starts a PostgreSQL
server (commits durable, as in production) and an ``mlflow server`` on it with proxied
artifacts (see docs/scaling.md), or uses ``--uri``. Each cell starts its processes fresh
(threads pinned to 1), lets them import and load their data, then tells them all to
go at once. Each process fits a model with autologging (even ones scikit-learn's
``GradientBoostingRegressor``, odd ones XGBoost's ``XGBRegressor`` with an eval set:
100 rounds of points) in a run, waits until what the fit logged is stored and every
process got there, then, all at once again, logs ``--points`` step metrics in the same
run and reports when they were stored:

* ``mlhooks``: ``mlhooks.autolog()``, ``mlhooks.log_metric`` per point, then
  ``mlhooks.flush()``;
* ``log_batch``: MLflow's ``sklearn``/``xgboost`` autolog, then one
  ``MlflowClient.log_batch`` per 1,000 points (``Metric`` objects built in the loop);
* ``log_metric``: the same autolog, then ``mlflow.log_metric`` per point, for
  ``--mlflow-points`` points (each call is a request and a commit: tens of milliseconds
  on a durable database, so fewer points give the same rate).

Every cell is verified on the server: every run FINISHED with its params, every step
of ``loss`` stored exactly once, no metric with a step twice, one READY logged model
per run, and for mlhooks nothing set aside or warned about. MLflow's store drops a
point it already holds (same key, step, timestamp and value), so a point sent twice
cannot show as a second row: at the end, the script also says how many rows of
``loss`` the database was asked to insert beyond those it holds (a trigger counts them;
its own server only).

"points/s" is the aggregate rate: every process's points over the window from the
moment they start to the last process's points stored. "points slowest/median s": from
that moment to a process's points stored, the slowest process and the median one (one
process starved by the others would show as a slowest far above the median).
"fit+points slowest s": a process's fit until stored plus its points until stored (the
wait between them left out), the slowest. "enqueue s": the median time of the loop
that logs the points, what the training thread spends. "points CPU s": the CPU time
(every thread) of all the processes together from the moment they start their points
until stored: on one machine, what the writers take from the server. "load before":
the machine's load average (1 minute) as the cell starts, the other work on a shared
machine. Cells
of one process and of ``--processes`` alternate their configs' order every
repetition; ratios are paired (within one repetition) before the median.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CONFIGS = ("mlhooks", "log_batch", "log_metric")
ROUNDS = 100
"""Estimators of each fit: XGBoost logs a point per round."""


def fit(index: int, X: Any, y: Any) -> None:
    """The training of process ``index``: scikit-learn for even ones, XGBoost for odd."""
    if index % 2 == 0:
        from sklearn.ensemble import GradientBoostingRegressor

        GradientBoostingRegressor(n_estimators=ROUNDS, max_depth=3).fit(X, y)
    else:
        import xgboost as xgb

        model = xgb.XGBRegressor(n_estimators=ROUNDS, max_depth=3, n_jobs=1)
        model.fit(X, y, eval_set=[(X, y)], verbose=False)


def cpu_s() -> float:
    """CPU time of this process so far (every thread, user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(config: str, index: int, points: int, experiment: str, uri: str) -> dict[str, Any]:
    """One training process: waits for a line on stdin, then trains and logs."""
    import mlflow
    import xgboost  # noqa: F401 - imported before the clock, as a training script would
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_diabetes

    import mlhooks

    X, y = load_diabetes(return_X_y=True)
    mlflow.set_tracking_uri(uri)
    experiment_id = MlflowClient().get_experiment_by_name(experiment).experiment_id
    name = f"writer-{index}"
    print("ready", flush=True)
    sys.stdin.readline()
    times: dict[str, float] = {"go": time.time()}

    def fitted() -> None:
        """The fit's run data is stored: say so, and wait until every process is."""
        times["fitted"] = time.time()
        print("fitted", flush=True)
        sys.stdin.readline()
        times["points"] = time.time()
        times["points_cpu"] = cpu_s()

    if config == "mlhooks":
        mlhooks.autolog()
        with mlhooks.start_run(name, experiment=experiment):
            mlhooks.log_param("writer", index)
            fit(index, X, y)
            assert mlhooks.flush(3600), "mlhooks did not store the fit"
            fitted()
            for step in range(points):
                mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
            times["enqueued"] = time.time()
        assert mlhooks.flush(3600), "mlhooks did not store everything"
    else:
        mlflow.sklearn.autolog()
        mlflow.xgboost.autolog()
        client = MlflowClient()
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.log_param("writer", index)
            fit(index, X, y)
            fitted()
            if config == "log_metric":
                for step in range(points):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            else:
                batch = []
                for step in range(points):
                    now = int(time.time() * 1000)
                    batch.append(Metric("loss", 1.0 / (step + 1), now, step))
                    if len(batch) == 1000:
                        client.log_batch(run.info.run_id, metrics=batch)
                        batch = []
                if batch:
                    client.log_batch(run.info.run_id, metrics=batch)
            times["enqueued"] = time.time()
    times["stored"] = time.time()
    times["stored_cpu"] = cpu_s()
    return times


def verify(uri: str, experiment: str, processes: int, points: int) -> None:
    """Every run, param, point and model of the cell stored, none twice."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=10_000)
    names = sorted(run.info.run_name for run in runs)
    assert names == sorted(f"writer-{i}" for i in range(processes)), f"runs: {names}"
    models = client.search_logged_models([experiment_id], max_results=10_000)
    for run in runs:
        index = int(run.info.run_name.split("-")[1])
        assert run.info.status == "FINISHED", f"{run.info.run_name}: {run.info.status}"
        assert run.data.params.get("writer") == str(index), run.data.params
        params = run.data.params  # MLflow's XGBoost autolog names it num_boost_round
        rounds_param = params.get("n_estimators", params.get("num_boost_round"))
        assert rounds_param == str(ROUNDS), f"{run.info.run_name}: {params}"
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), f"{run.info.run_name}: {key} stored twice"
            if key == "loss":
                assert sorted(steps) == list(range(points)), f"{run.info.run_name}: loss"
        if index % 2 == 1:
            rounds = [k for k in run.data.metrics if k.startswith("validation_0")]
            assert rounds, f"{run.info.run_name}: no per-round metric"
            history = client.get_metric_history(run.info.run_id, rounds[0])
            assert len(history) == ROUNDS, f"{run.info.run_name}: {len(history)} rounds"
        own = [m for m in models if m.source_run_id == run.info.run_id]
        assert [m.status for m in own] == ["READY"], f"{run.info.run_name}: models {own}"


def run_cell(
    config: str, processes: int, points: int, uri: str, root: Path, label: str
) -> dict[str, Any]:
    """Start ``processes`` fresh writers, tell them to go at once, verify what they
    stored; the cell's figures."""
    from mlflow.tracking import MlflowClient

    experiment = f"{label}-{config}-{processes}p-{uuid.uuid4().hex[:8]}"
    MlflowClient(uri).create_experiment(experiment)
    folder = root / experiment
    children = []
    for index in range(processes):
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLHOOKS_LOCAL_DIR": str(folder / f"writer-{index}"),
            "MLHOOKS_FLUSH_TIMEOUT": "3600",
            "MLHOOKS_EXIT_TIMEOUT": "3600",
            "MLHOOKS_STRICT": "0",
            # MLflow's telemetry thread sets and unsets a variable of os.environ while
            # requests reads it: a KeyError in MLflow's own client (a log_param of the
            # log_batch cells failed so, once in a run of 16 processes).
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        command = [sys.executable, __file__, "--child", config, str(index), str(points),
                   experiment, uri]  # fmt: skip
        children.append(
            subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=root,
            )
        )
    for step in ("ready", "fitted"):  # all at once: the fits, then the points
        for process in children:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip() == step, f"a writer stopped:\n{process.communicate()[1]}"
        for process in children:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
    reports = []
    for index, process in enumerate(children):
        out, err = process.communicate(timeout=7200)
        assert process.returncode == 0, f"writer {index} failed:\n{err}"
        if config == "mlhooks":
            assert "MlhooksWarning" not in err, f"writer {index} was warned:\n{err}"
            rejected = list((folder / f"writer-{index}").glob(".spool/rejected/*"))
            assert not rejected, f"writer {index} set aside data: {rejected}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    verify(uri, experiment, processes, points)
    points_stored = [r["stored"] - r["points"] for r in reports]
    whole = [r["fitted"] - r["go"] + r["stored"] - r["points"] for r in reports]
    window = max(r["stored"] for r in reports) - min(r["points"] for r in reports)
    return {
        "points/s": processes * points / window,
        "points slowest s": max(points_stored),
        "points median s": statistics.median(points_stored),
        "fit+points slowest s": max(whole),
        "enqueue s": statistics.median(r["enqueued"] - r["points"] for r in reports),
        "points CPU s": sum(r["stored_cpu"] - r["points_cpu"] for r in reports),
    }


def sent_again(server: Any) -> int:
    """Rows of ``loss`` the server's database was asked to insert beyond those it holds:
    points sent twice (see ``TeamServer.count_inserts``)."""
    with server.postgres.connect(server.database) as connection:
        held = connection.execute("SELECT count(*) FROM metrics WHERE key = 'loss'").fetchone()
    assert held is not None
    return int(server.inserts_tried()) - int(held[0])


def start_team_server(root: Path, workers: int) -> tuple[Any, Any]:
    """PostgreSQL (durable commits) and an ``mlflow server`` on it, as docs/scaling.md
    runs them."""
    from mlhooks_mlflow.postgres import Postgres
    from mlhooks_mlflow.servers import TeamServer

    database = Postgres(durable=True)
    database.start()
    try:
        server = TeamServer(root / "server", database, "mlflow", workers=workers)
        server.start()
        server.count_inserts("loss")
    except BaseException:
        database.stop()
        raise
    return database, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--mlflow-points", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2, help="of the many-process cells")
    parser.add_argument("--single-repeats", type=int, default=3, help="of one-process cells")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--uri", default=None, help="a team server to use instead")
    parser.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, index, points, experiment, uri = args.child
        print(json.dumps(child(config, int(index), int(points), experiment, uri)))
        return

    configs = [c for c in args.configs.split(",") if c]
    if args.uri is None:
        from mlhooks_mlflow.postgres import unavailable

        reason = unavailable()
        if reason is not None:  # nox -s bench goes on with the other benchmarks
            print(f"skipped: {reason}")
            return
    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-writers-"))
    database = server = None
    uri = args.uri
    if uri is None:
        database, server = start_team_server(root, args.server_workers)
        uri = server.uri
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    plan = [(1, r) for r in range(args.single_repeats)]
    plan += [(args.processes, r) for r in range(args.repeats)]
    try:
        for processes, repeat in plan:
            order = configs if repeat % 2 == 0 else configs[::-1]
            for config in order:
                points = args.mlflow_points if config == "log_metric" else args.points
                load = os.getloadavg()[0]  # before the cell: the machine's other work
                figures = run_cell(config, processes, points, uri, root, f"r{repeat}")
                figures["load before"] = load
                cells.setdefault((config, processes), []).append(figures)
                shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                print(f"{config} x{processes} (repeat {repeat + 1}): verified; {shown}", flush=True)
        if server is not None:
            print(f"points of loss the database was asked to insert again: {sent_again(server):,}")
    finally:
        if server is not None:
            server.stop()
        if database is not None:
            database.stop()
        shutil.rmtree(root, ignore_errors=True)

    served = f"server workers {args.server_workers}" if args.uri is None else args.uri
    print(f"\n{args.processes} processes x {args.points:,} points ({args.mlflow_points:,} with "
          f"log_metric), medians; threads pinned to 1; {served}")  # fmt: skip
    header = ("config", "processes", "repeats", "points/s", "points slowest s", "points median s",
              "fit+points slowest s", "enqueue s", "points CPU s", "load before")  # fmt: skip
    print(" | ".join(header))
    for (config, processes), runs in sorted(cells.items(), key=lambda c: (c[0][1], c[0][0])):
        medians = [statistics.median(r[k] for r in runs) for k in header[3:]]
        print(f"{config} | {processes} | {len(runs)} | " + " | ".join(f"{v:,.2f}" for v in medians))
    print("\npaired ratios of points/s (median over repetitions):")
    for processes in sorted({p for _, p in cells}):
        for other in configs[1:]:
            if ("mlhooks", processes) in cells and (other, processes) in cells:
                pairs = zip(cells[("mlhooks", processes)], cells[(other, processes)], strict=False)
                ratio = statistics.median(a["points/s"] / b["points/s"] for a, b in pairs)
                print(f"  mlhooks / {other}, {processes} process(es): {ratio:.2f}x")
    for config in configs:
        if (config, 1) in cells and (config, args.processes) in cells and args.processes != 1:
            many = statistics.median(r["points/s"] for r in cells[(config, args.processes)])
            one = statistics.median(r["points/s"] for r in cells[(config, 1)])
            print(f"  {config}: {args.processes} processes / 1 process: {many / one:.2f}x")


if __name__ == "__main__":
    main()
