"""The writer service against tracking in the training process (issue 14).

Run: ``python benchmarks/bench_service.py [--repeats 10] [--workloads a,b]`` (needs
mlhooks-mlflow, -sklearn, -xgboost and -lightning). Each workload is a small training
script run in a fresh process per measurement, into a fresh sqlite MLflow store,
threads pinned to 1, the configurations alternating (their order rotates every
repetition):

* ``none``: no logging;
* ``mlflow``: MLflow's own autologging for the framework (``mlflow.<flavor>.autolog()``);
* ``in-process``: ``mlhooks.autolog()`` with ``MLHOOKS_SERVICE=0`` (the writers are
  threads of the training process);
* ``service``: ``mlhooks.autolog()`` with ``MLHOOKS_SERVICE=1`` (the MLflow backend
  runs in the writer service).

To tell where mlhooks' cost goes, ``--configs`` also takes (not run by default):

* ``memory``: ``mlhooks.autolog()`` into the in-memory store only
  (``MLHOOKS_BACKENDS=memory``): the hooks on the training thread, no backend work;
* ``service-no-models``: ``service`` with ``MLHOOKS_LOG_MODELS=0`` (no model captured);
* ``service-no-training-metrics``: ``service`` with
  ``autolog(sklearn={"log_training_metrics": False})`` (no ``predict`` on the training
  data after each scikit-learn fit).

Workloads (what "training" times in each):

* ``lightning``: a Lightning MLP, 40 epochs, every step logged: ``Trainer.fit``.
* ``xgboost``: ``xgboost.train``, 300 rounds, two eval sets, as the second tracked
  fit of the process (a first fit of 50 rounds with its model just before).
* ``ridge``: 200 sequential ``Ridge`` fits, each its own run with its model: the loop
  (per fit), and until everything is stored (per fit; ``mlhooks.flush()``).
* ``gridsearch``: ``GridSearchCV`` over ``RandomForestRegressor(n_estimators=50)``, 12
  candidates, 5,000 x 20 rows, cv=3: peak RSS of the training process.
* ``startup``: ``import mlhooks; mlhooks.autolog()`` in a script that imported
  scikit-learn, and whether MLflow got imported by it.
* ``script``: a whole short script (30 fits: ten scikit-learn classifiers on three
  generated datasets, as in scikit-learn's classifier comparison example, without the
  plots), from the interpreter's start to its exit.
* ``digits``: a whole script, scikit-learn's example "Custom refit strategy of a grid
  search with cross-validation" (12 SVC candidates x 5 folds on the bundled digits, and
  the refit), from the interpreter's start to its exit.

The timed loops (``lightning``, ``xgboost``, ``ridge``; not ``gridsearch``, measured
for its memory) run ``gc.collect()`` in every configuration just before their clock
starts (``--no-gc-settle`` leaves it out): the full collection that Python owes since
the imports (a pass over every object the imports made, about 70 ms with
scikit-learn loaded) otherwise falls into the first timed stretch that keeps a few
objects alive. A tracked loop does; the untracked Ridge loop keeps nothing and never
runs it. In 200 Ridge fits that is 0.35 ms per fit, charged to tracking, for a
collection any script that later keeps objects alive would run at that point.

Every measurement also gives "exit": the time from the end of the script's last line
to the process's end (everything handed over). Ratios are paired: the two processes
of one repetition are divided before the median is taken.
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
import textwrap
import time
from pathlib import Path
from typing import Any

CONFIGS = ("none", "mlflow", "in-process", "service")
MORE_CONFIGS: dict[str, dict[str, str]] = {
    "memory": {"MLHOOKS_BACKENDS": "memory"},
    "service-no-models": {"MLHOOKS_SERVICE": "1", "MLHOOKS_LOG_MODELS": "0"},
    "service-no-training-metrics": {"MLHOOKS_SERVICE": "1"},
}
"""The environment of each configuration that takes mlhooks apart, beside its own."""

PRELUDE = """
import json, os, resource, sys, time
T0 = time.perf_counter()
CONFIG = os.environ["BENCH_CONFIG"]
def setup(flavor):
    if CONFIG == "mlflow":
        import mlflow, importlib
        importlib.import_module("mlflow." + flavor).autolog()
    elif CONFIG == "service-no-training-metrics":
        import mlhooks
        mlhooks.autolog(sklearn={"log_training_metrics": False})
    elif CONFIG != "none":
        import mlhooks
        mlhooks.autolog()
def settle():
    # the collection owed since the imports (see the module's docstring)
    if os.environ["BENCH_GC_SETTLE"] == "1":
        import gc
        gc.collect()
def stored():
    if CONFIG not in ("none", "mlflow"):
        import mlhooks
        mlhooks.flush()
def report(**figures):
    figures["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["ended"] = time.time()
    print(json.dumps(figures), flush=True)
"""

WORKLOADS: dict[str, str] = {
    "lightning": """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl
setup("pytorch")
torch.manual_seed(0)
class MLP(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
    def training_step(self, batch, i):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
x = torch.randn(2048, 20)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=64)
trainer = pl.Trainer(max_epochs=40, log_every_n_steps=1, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, logger=False)
settle()
start = time.perf_counter()
trainer.fit(MLP(), data)
training = time.perf_counter() - start
stored()
report(training=training, until_stored=time.perf_counter() - start)
""",
    "xgboost": """
import numpy as np
import xgboost as xgb
setup("xgboost")
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 20)); y = X[:, 0] + rng.normal(size=4000)
train, valid = xgb.DMatrix(X[:3000], y[:3000]), xgb.DMatrix(X[3000:], y[3000:])
params = {"max_depth": 4, "nthread": 1}
xgb.train(params, train, 50, evals=[(train, "train")])
settle()
start = time.perf_counter()
xgb.train(params, train, 300, evals=[(train, "train"), (valid, "valid")], verbose_eval=False)
training = time.perf_counter() - start
stored()
report(training=training, until_stored=time.perf_counter() - start)
""",
    "ridge": """
import numpy as np
from sklearn.linear_model import Ridge
setup("sklearn")
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 10)); y = X @ rng.normal(size=10)
settle()
start = time.perf_counter(); cpu = time.thread_time()
for i in range(200):
    Ridge(alpha=1.0 + i).fit(X, y)
training = time.perf_counter() - start; cpu = time.thread_time() - cpu
stored()
until = time.perf_counter() - start
report(training=training, per_fit_ms=training / 200 * 1000, cpu_per_fit_ms=cpu / 200 * 1000,
       stored_per_fit_ms=until / 200 * 1000, until_stored=until)
""",
    "gridsearch": """
import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GridSearchCV
setup("sklearn")
rng = np.random.default_rng(0)
X = rng.normal(size=(5000, 20)); y = X[:, 0] + rng.normal(size=5000)
grid = {"max_depth": [4, 8, 12], "min_samples_leaf": [1, 2, 4, 8]}
start = time.perf_counter()
GridSearchCV(RandomForestRegressor(n_estimators=50, n_jobs=1), grid, cv=3).fit(X, y)
training = time.perf_counter() - start
stored()
report(training=training, until_stored=time.perf_counter() - start)
""",
    "startup": """
import sklearn.linear_model
start = time.perf_counter()
if CONFIG not in ("none", "mlflow"):
    import mlhooks
    mlhooks.autolog()
elif CONFIG == "mlflow":
    import mlflow
    mlflow.sklearn.autolog()
took = time.perf_counter() - start
report(training=took, mlflow_imported=float("mlflow" in sys.modules))
""",
    "script": """
import numpy as np
from sklearn.datasets import make_circles, make_classification, make_moons
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
setup("sklearn")
X, y = make_classification(n_features=2, n_redundant=0, n_informative=2, random_state=1)
X += 2 * np.random.RandomState(2).uniform(size=X.shape)
datasets = [make_moons(noise=0.3, random_state=0),
            make_circles(noise=0.2, factor=0.5, random_state=1), (X, y)]
classifiers = [KNeighborsClassifier(3), SVC(kernel="linear", C=0.025), SVC(gamma=2, C=1),
    GaussianProcessClassifier(), DecisionTreeClassifier(max_depth=5),
    RandomForestClassifier(max_depth=5, n_estimators=10, max_features=1),
    MLPClassifier(alpha=1, max_iter=1000), AdaBoostClassifier(), GaussianNB(),
    QuadraticDiscriminantAnalysis()]
for X, y in datasets:
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=42)
    for clf in classifiers:
        model = make_pipeline(StandardScaler(), clf).fit(X_train, y_train)
        model.score(X_test, y_test)
report(training=time.perf_counter() - T0)
""",
    "digits": """
# scikit-learn's example "Custom refit strategy of a grid search with cross-validation"
# (examples/model_selection/plot_grid_search_digits.py), its printing left out and its
# refit strategy shortened to its two filters and its choice: 12 SVC
# candidates, 5 folds, two scores, on the bundled digits.
import pandas as pd
from sklearn import datasets
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC
from sklearn.metrics import classification_report
setup("sklearn")
digits = datasets.load_digits()
n_samples = len(digits.images)
X = digits.images.reshape((n_samples, -1))
y = digits.target == 8
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
scores = ["precision", "recall"]
def refit_strategy(cv_results):
    precision_threshold = 0.98
    frame = pd.DataFrame(cv_results)
    high = frame[frame["mean_test_precision"] > precision_threshold]
    best_recall = high["mean_test_recall"].max() - high["std_test_recall"].max()
    fast = high[high["mean_test_recall"] > best_recall]
    return fast["mean_fit_time"].idxmin()
tuned_parameters = [
    {"kernel": ["rbf"], "gamma": [1e-3, 1e-4], "C": [1, 10, 100, 1000]},
    {"kernel": ["linear"], "C": [1, 10, 100, 1000]},
]
grid_search = GridSearchCV(SVC(), tuned_parameters, scoring=scores, refit=refit_strategy)
grid_search.fit(X_train, y_train)
classification_report(y_test, grid_search.predict(X_test))
report(training=time.perf_counter() - T0)
""",
}


def measure(workload: str, config: str, settle: bool = True) -> dict[str, Any]:
    """One fresh process of ``workload`` under ``config``; its figures, with "total"
    (interpreter start to exit) and "exit" (its last line to its end). ``settle``: the
    timed loop collects the garbage before its clock starts."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "train.py"
        script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(WORKLOADS[workload]))
        env = dict(os.environ)
        env.update(
            BENCH_CONFIG=config,
            MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db",
            MLHOOKS_LOCAL_DIR=f"{folder}/mlhooks-runs",
            MLHOOKS_SERVICE="1" if config == "service" else "0",
            BENCH_GC_SETTLE="1" if settle else "0",
            PYTHONWARNINGS="ignore",
        )
        env.update(MORE_CONFIGS.get(config, {}))
        # stderr to a file: the service holds a copy of the script's stderr until it
        # is done, so a pipe read to its end would time the service, not the script.
        with open(Path(folder) / "stderr.txt", "w+") as stderr:
            started = time.time()
            done = subprocess.run(
                [sys.executable, str(script)],
                env=env,
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                check=False,
            )
            ended = time.time()
            stderr.seek(0)
            errors = stderr.read()
            if done.returncode != 0:
                raise RuntimeError(f"{workload}/{config} failed:\n{errors[-3000:]}")
            _wait_for_services(Path(folder))  # the next measurement starts on a quiet machine
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        figures["total"] = ended - started
        figures["exit"] = ended - figures.pop("ended")
        return figures


def _wait_for_services(folder: Path) -> None:
    """Wait until the writer services of a measured script are done (they store after
    it exited; the folder is removed next)."""
    from mlhooks.testing import wait_for_services

    wait_for_services(folder / "mlhooks-runs", timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument(
        "--no-gc-settle",
        action="store_true",
        help="leave the garbage collection owed since the imports to the timed loop",
    )
    args = parser.parse_args()
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS) - set(MORE_CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {[*CONFIGS, *MORE_CONFIGS]}")
    for workload in args.workloads.split(","):
        results: dict[str, list[dict[str, Any]]] = {config: [] for config in configs}
        for repeat in range(args.repeats):
            order = configs[repeat % len(configs) :] + configs[: repeat % len(configs)]
            for config in order:
                results[config].append(measure(workload, config, not args.no_gc_settle))
        _print(workload, results, not args.no_gc_settle)


def _print(workload: str, results: dict[str, list[dict[str, Any]]], settled: bool) -> None:
    mode = "gc settled" if settled else "--no-gc-settle"
    print(f"\n## {workload} ({len(next(iter(results.values())))} repetitions, {mode})")
    keys = [k for k in next(iter(results.values()))[0] if isinstance(k, str)]
    print("| config | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    base = results.get("none")
    for config, rows in results.items():
        cells = []
        for key in keys:
            values = [row[key] for row in rows]
            cell = f"{statistics.median(values):.3f}"
            if base is not None and config != "none" and key in ("training", "total"):
                ratios = [row[key] / ref[key] for row, ref in zip(rows, base, strict=True)]
                cell += f" ({statistics.median(ratios):.3f}x)"
            elif base is not None and config != "none" and key.endswith("_ms"):
                more = [row[key] - ref[key] for row, ref in zip(rows, base, strict=True)]
                cell += f" ({statistics.median(more):+.2f})"
            cells.append(cell)
        print(f"| {config} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
