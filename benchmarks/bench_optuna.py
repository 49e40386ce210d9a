"""An Optuna study with no logging, with an MLflow callback that logs as
optuna-integration's ``MLflowCallback`` does, and with ``mlhooks.autolog()``, side by side.

Run: ``python benchmarks/bench_optuna.py [--repeats R] [--trials N]`` (needs optuna,
mlflow and mlhooks-mlflow + mlhooks-optuna installed). Each measurement is a fresh
process that times one ``study.optimize(objective, n_trials=N)`` (a ``TPESampler`` with
a seed, an objective of two suggested params and a few arithmetic operations). The
anchor, "mlflow callback", is a callback doing with MLflow's fluent API what
``optuna_integration.MLflowCallback.__call__`` does after each trial (optuna-integration
is not installed here): ``mlflow.set_experiment(study_name)``, a run named after the
trial's number, its value(s) as metrics, its params, and its number, start and end
times, state, direction, distributions and user attributes as tags. mlhooks logs to
MLflow too (the study's run, a child run per trial); "mlhooks.autolog 2nd study" times a
study in a process that already tracked one (a small one), as every study after the
first is: the first one of a process also pays for what mlhooks does once per process
(the run context's list of installed distributions, computed when no fit runs, is
waited for when the study's run ends). The configurations alternate,
in reverse order every other repetition, with threads pinned to 1; medians are printed
with the time added per trial against no logging, for wall time and for the CPU time
of the optimizing thread. Each process writes to its own existing (tables created
beforehand), empty sqlite MLflow store and exits without an explicit flush; the parent
then checks that every trial's run landed by exit and reports how long the process
took from the end of ``optimize`` to its exit.
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
from typing import Any

CONFIGS = ("no logging", "mlflow callback", "mlhooks.autolog", "mlhooks.autolog 2nd study")


def mlflow_callback(study: Any, trial: Any) -> None:
    """What ``MLflowCallback.__call__`` does (optuna-integration 4.x), with MLflow calls."""
    import mlflow

    mlflow.set_experiment(study.study_name)
    with mlflow.start_run(run_name=str(trial.number)):
        values = trial.values or []
        names = ["value"] if len(values) == 1 else [f"value_{i}" for i in range(len(values))]
        mlflow.log_metrics(dict(zip(names, values, strict=True)))
        mlflow.log_params(trial.params)
        directions = [d.name for d in study.directions]
        tags: dict[str, Any] = {
            "number": str(trial.number),
            "datetime_start": str(trial.datetime_start),
            "datetime_complete": str(trial.datetime_complete),
            "state": trial.state.name,
            "direction": directions if len(directions) != 1 else directions[0],
        }
        tags.update({f"{k}_distribution": str(v) for k, v in trial.distributions.items()})
        tags.update(trial.user_attrs)
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", -10, 10)
    k = trial.suggest_int("k", 1, 5)
    return (x - 2) ** 2 + k


def measure(config: str, trials: int) -> dict[str, float]:
    """One measurement, in this process."""
    if config.startswith("mlhooks.autolog"):
        import mlhooks

        mlhooks.autolog()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callbacks = [mlflow_callback] if config == "mlflow callback" else None
    if config.endswith("2nd study"):  # the process already tracked a study (a small one)
        optuna.create_study(study_name="first").optimize(objective, n_trials=3)
    study = optuna.create_study(study_name="bench", sampler=optuna.samplers.TPESampler(seed=0))
    start, cpu = time.perf_counter(), time.thread_time()
    study.optimize(objective, n_trials=trials, callbacks=callbacks)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return {"optimize_s": seconds, "thread_cpu_s": cpu, "optimize_end": time.time()}


def stored_trials(uri: str, config: str, trials: int) -> str:
    """ "all N" when a run per trial, with its value, is in the store (and, for mlhooks,
    each is a child of the study's run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trial_runs = [run for run in runs if "value" in run.data.metrics]
    if config.startswith("mlhooks.autolog"):
        parents = [run for run in runs if run.info.run_name == "bench"]
        if len(parents) != 1:
            return f"{len(parents)} study runs"
        parent_id = parents[0].info.run_id
        trial_runs = [r for r in trial_runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return f"all {trials}" if len(trial_runs) == trials else f"only {len(trial_runs)}"


def create_store(uri: str) -> None:
    """An existing, empty tracking store, as a user's ./mlflow.db is (creating the
    tables takes seconds and happens once, not per study)."""
    subprocess.run(
        [sys.executable, "-c",
         f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"],
        check=True, capture_output=True,
        cwd=os.path.dirname(uri.removeprefix("sqlite:///")),  # a new store's ./mlruns
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.trials)))
        return

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-optuna-"))
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
                [sys.executable, __file__, "--child", config, "--trials", str(args.trials)],
                check=True, capture_output=True, text=True, cwd=folder, env=env,
            )  # fmt: skip
            exited = time.time()
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["exit_s"] = exited - result.pop("optimize_end")
            results[config].append(result)
            if config != "no logging":
                checks[config].append(stored_trials(uri, config, args.trials))

    base = statistics.median(r["optimize_s"] for r in results["no logging"])
    base_cpu = statistics.median(r["thread_cpu_s"] for r in results["no logging"])
    print(
        f"study.optimize, {args.trials} trials of a cheap objective (TPESampler, 2 params), "
        f"threads pinned to 1; median of {args.repeats} fresh processes, alternating"
    )
    header = ("config", "optimize s", "ms/trial added", "thread CPU s", "ms/trial added",
              "end->exit s", "trials stored by exit")  # fmt: skip
    print(
        f"{header[0]:<26} {header[1]:>10} {header[2]:>14} {header[3]:>12} {header[4]:>14} "
        f"{header[5]:>11}  {header[6]}"
    )
    for config in CONFIGS:
        runs = results[config]
        wall = statistics.median(r["optimize_s"] for r in runs)
        cpu = statistics.median(r["thread_cpu_s"] for r in runs)
        exit_s = statistics.median(r["exit_s"] for r in runs)
        stored = ", ".join(sorted(set(checks[config]))) or "-"
        print(
            f"{config:<26} {wall:>10.3f} {(wall - base) / args.trials * 1000:>+14.2f} "
            f"{cpu:>12.3f} {(cpu - base_cpu) / args.trials * 1000:>+14.2f} {exit_s:>11.2f}  "
            f"{stored}"
        )


if __name__ == "__main__":
    main()
