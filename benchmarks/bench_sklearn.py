"""scikit-learn autologging: no logging vs ``mlflow.sklearn.autolog()`` vs ``mlhooks.autolog()``.

Run: ``python benchmarks/bench_sklearn.py [--repeats 5] [--fits 200] [--mlflow-fits 20]``
(needs mlhooks-mlflow and mlhooks-sklearn installed). Two workloads, each timed in
fresh processes with the configurations alternating (their order rotates every
repetition), threads pinned to 1, medians reported:

* ``ridge``: sequential ``Ridge`` fits on 1,000 x 10 data, each its own run; 200 fits
  (``--fits``), 20 for mlflow.autolog (``--mlflow-fits``), whose fits take seconds each:
  compare per-fit figures.
* ``search``: a 12-candidate ``GridSearchCV`` over a 50-tree ``RandomForestRegressor``
  on 5,000 x 20 data, cv=3.

Both autologgers log models (their default) into a fresh sqlite MLflow store per process.
"training" is the wall time of the fit calls, "training-thread CPU" the CPU time of
that thread over them (``time.thread_time()``: what the thread itself spent, which a
loaded machine does not inflate; MLflow's pip-requirement subprocesses are not in it);
"stored" runs until everything is in the store (``mlhooks.flush()`` returned; MLflow's
autologging writes on the training thread, so its two figures are the same). One
untimed warm-up fit per process (imports, the store's tables, pip requirements) is
excluded. "writes" counts the store's write transactions (SQLAlchemy's events, with the
counter of ``mlhooks_mlflow.testing`` loaded from this checkout) from the first timed fit
until everything is stored, per fit.

``--trees before=/work/main,after=/work/wt/x`` times ``mlhooks`` only, once with each
checkout's code (its ``src`` and ``plugins/*/src`` as the child's ``PYTHONPATH``), in
alternating fresh processes, and adds the paired ratios to the first checkout (the
median over repetitions of each repetition's ratio).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = ("none", "mlflow.autolog", "mlhooks")
WORKLOADS = ("ridge", "search")


def _data(rows: int, features: int) -> tuple[object, object]:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    y = X @ rng.normal(size=features) + rng.normal(scale=0.5, size=rows)
    return X, y


def _enable(config: str) -> None:
    if config == "mlflow.autolog":
        import mlflow

        mlflow.sklearn.autolog()  # log_models=True by default
    elif config == "mlhooks":
        import mlhooks

        mlhooks.autolog()  # the MLflow backend and models are the defaults


def _stored(config: str) -> None:
    if config == "mlhooks":
        import mlhooks

        assert mlhooks.flush(3600), "mlhooks did not flush within an hour"


def _count_runs() -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments, max_results=50_000))


def _write_counter() -> Any:
    """The store's write transactions from now on (``WriteTransactions`` of this
    checkout's ``mlhooks_mlflow.testing``, loaded by path: the code measured may be
    another checkout's). It is loaded as a module of a package of its folder that is
    not imported (its relative imports, ``servers`` and ``postgres``, need the standard
    library only; the plugin's ``__init__`` would import the measured code's MLflow)."""
    import types

    folder = Path(__file__).resolve().parents[1] / "plugins/mlhooks-mlflow/src/mlhooks_mlflow"
    package = types.ModuleType("bench_counter")
    package.__path__ = [str(folder)]
    sys.modules["bench_counter"] = package
    spec = importlib.util.spec_from_file_location("bench_counter.testing", folder / "testing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.WriteTransactions(os.environ["MLFLOW_TRACKING_URI"]).__enter__()


def measure(config: str, workload: str, fits: int) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    import mlflow
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.tracking.MlflowClient().search_experiments()  # creates the store's tables
    _enable(config)
    if workload == "ridge":
        X, y = _data(1_000, 10)
        Ridge().fit(X, y)  # warm-up
        _stored(config)
        writes = _write_counter()
        start, cpu_start = time.perf_counter(), time.thread_time()
        for _ in range(fits):
            Ridge().fit(X, y)
        training, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
        _stored(config)
        stored = time.perf_counter() - start
        writes.__exit__()
        runs = _count_runs()
        return {
            "training": training / fits,
            "cpu": cpu / fits,
            "stored": stored / fits,
            "writes": len(writes) / fits,
            "runs": runs,
            "fits": fits,
        }
    X, y = _data(5_000, 20)
    Ridge().fit(X[:100], y[:100])  # warm-up (the search's own fits are 40 s)
    _stored(config)
    grid = {"max_depth": [4, 8, 12], "max_features": [0.25, 0.5, 0.75, 1.0]}
    search = GridSearchCV(RandomForestRegressor(n_estimators=50, random_state=0), grid, cv=3)
    start, cpu_start = time.perf_counter(), time.thread_time()
    search.fit(X, y)
    training, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    _stored(config)
    stored = time.perf_counter() - start
    return {"training": training, "cpu": cpu, "stored": stored, "runs": _count_runs(), "fits": 1}


def code_path(tree: str) -> str:
    """The ``PYTHONPATH`` that runs checkout ``tree``'s code."""
    root = Path(tree)
    return os.pathsep.join(str(p) for p in [root / "src", *sorted(root.glob("plugins/*/src"))])


def run_child(config: str, workload: str, fits: int, tree: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-sklearn-") as folder:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(folder) / 'mlflow.db'}",
            "MLHOOKS_LOCAL_DIR": str(Path(folder) / "mlhooks-runs"),
            "MLFLOW_EXPERIMENT_NAME": f"bench-{workload}",
        }
        if tree is not None:
            env["PYTHONPATH"] = code_path(tree)
        done = subprocess.run(
            [sys.executable, __file__, "--child", config, workload, str(fits)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{config} {workload} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fits", type=int, default=200)
    parser.add_argument("--mlflow-fits", type=int, default=20)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="a subset, with none")
    parser.add_argument(
        "--trees", help="NAME=PATH,...: mlhooks with each checkout's code, paired ratios"
    )
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "WORKLOAD", "FITS"))
    args = parser.parse_args()
    if args.child:
        config, workload, fits = args.child
        print(json.dumps(measure(config, workload, int(fits))))
        return
    if args.trees:
        trees = dict(item.split("=", 1) for item in args.trees.split(","))
        for workload in args.workloads.split(","):
            compare_trees(trees, workload, args.repeats, args.fits)
        return
    configs = tuple(c for c in CONFIGS if c in args.configs.split(","))
    for workload in args.workloads.split(","):
        samples: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
        for repeat in range(args.repeats):
            turn = repeat % len(configs)
            order = configs[turn:] + configs[:turn]
            for config in order:
                fits = args.mlflow_fits if config == "mlflow.autolog" else args.fits
                samples[config].append(run_child(config, workload, fits))
                print(f"  {workload} {config} #{repeat}: {samples[config][-1]}", file=sys.stderr)
        report(workload, samples)


def report(workload: str, samples: dict[str, list[dict[str, float]]]) -> None:
    def median(config: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[config])

    base, base_cpu = median("none", "training"), median("none", "cpu")
    unit, scale = ("ms per fit", 1000) if workload == "ridge" else ("s", 1)
    print(f"\n{workload} (median of {len(samples['none'])} fresh processes per configuration)\n")
    print(
        f"| config | training ({unit}) | training-thread CPU ({unit}) | stored ({unit}) "
        "| training / none | CPU / none | stored / none | runs stored |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for config in samples:
        training, cpu, stored = (median(config, k) for k in ("training", "cpu", "stored"))
        print(
            f"| {config} | {training * scale:.2f} | {cpu * scale:.2f} | {stored * scale:.2f} | "
            f"{training / base:.3f}x | {cpu / base_cpu:.3f}x | {stored / base:.3f}x | "
            f"{int(median(config, 'runs'))} |"
        )
    sys.stdout.flush()


def compare_trees(trees: dict[str, str], workload: str, repeats: int, fits: int) -> None:
    """``mlhooks`` with each checkout's code, alternating fresh processes."""
    names = list(trees)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for repeat in range(repeats):
        turn = repeat % len(names)
        for name in names[turn:] + names[:turn]:
            samples[name].append(run_child("mlhooks", workload, fits, trees[name]))
            print(f"  {workload} {name} #{repeat}: {samples[name][-1]}", file=sys.stderr)
    keys = ("training", "cpu", "stored")
    scale = 1000 if workload == "ridge" else 1
    unit = "ms per fit" if workload == "ridge" else "s"
    print(f"\n{workload}, mlhooks (median of {repeats} fresh processes per checkout)\n")
    print(
        f"| code | training ({unit}) | training-thread CPU ({unit}) | stored ({unit}) "
        "| write transactions per fit | runs stored |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        got = samples[name]
        print(
            f"| {name} | "
            + " | ".join(f"{statistics.median(s[k] for s in got) * scale:.2f}" for k in keys)
            + f" | {statistics.median(s.get('writes', 0) for s in got):.2f}"
            f" | {int(statistics.median(s['runs'] for s in got))} |"
        )
    base = names[0]
    for name in names[1:]:
        pairs = list(zip(samples[name], samples[base], strict=True))
        ratios = {k: sorted(a[k] / b[k] for a, b in pairs) for k in keys}
        print(
            f"\n{name} / {base}, paired (median, range): "
            + "; ".join(
                f"{k} {statistics.median(r):.3f} ({r[0]:.2f} to {r[-1]:.2f})"
                for k, r in ratios.items()
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
