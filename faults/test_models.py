"""Models and volume (issue 13, repros 12 and 14), against a real sqlite MLflow store.

* A model holding code of the user's script (a function or class of ``__main__``, a
  closure, a lambda) or an object skops refuses (a compiled regular expression) is
  stored as an MLflow model that loads; one that nothing can save (it holds a lock) is
  set aside with its reason, and everything else of its run, and the runs after it,
  are stored. The backend never goes down over a model.
* Such models spooled while the store is away are replayed by ``mlhooks sync`` in
  another process, loadable, with the signature a live store gets.
* A script of many small fits that exits before its runs are stored leaves little on
  disk per run, and ``mlhooks sync`` stores every run once, complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris

from conftest import mlhooks_cli as cli
from conftest import wait_for_services
from mlhooks_mlflow.testing import MlflowServer, stored_models

RUN_ID_TAG = "mlhooks.run_id"

MODELS_OF_A_SCRIPT = """
import json, re, sys, threading
import numpy as np
import mlflow
import mlhooks
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer


def log1p_abs(x):  # a function of the script: skops refuses it
    return np.log1p(np.abs(x))


def scaled_by(factor):
    def scale(x):  # a closure: pickle refuses it
        return x * factor
    return scale


class Clip(TransformerMixin, BaseEstimator):  # a class of the script
    def __init__(self, high=5.0):
        self.high = high

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.minimum(X, self.high)


def guarded(x, guard):
    with guard:
        return x


WORD = re.compile(r"[a-z]+")
CASES = sys.argv[1].split(",")
mlhooks.autolog()
X, y = load_iris(return_X_y=True)
docs = ["red apple", "green apple", "red cherry", "green pear"] * 10
labels = [0, 1, 0, 1] * 10
lr = lambda: LogisticRegression(max_iter=300)
models = {
    "main_function": make_pipeline(FunctionTransformer(log1p_abs), lr()),
    "closure": make_pipeline(FunctionTransformer(scaled_by(0.5)), lr()),
    "lambda": make_pipeline(FunctionTransformer(lambda x: x + 1.0), lr()),
    "main_class": make_pipeline(Clip(), lr()),
    "regex": make_pipeline(CountVectorizer(tokenizer=WORD.findall, token_pattern=None), lr()),
    "unsaveable": make_pipeline(
        FunctionTransformer(guarded, kw_args={"guard": threading.Lock()}), lr()
    ),
    "after": lr(),
}
runs, predictions = {}, {}
for name in CASES:
    data = (docs, labels) if name == "regex" else (X, y)
    with mlhooks.start_run(name) as run:
        mlhooks.log_param("case", name)
        models[name].fit(*data)
        mlhooks.log_metric("done", 1.0)
    runs[name] = run.run_id
    predictions[name] = models[name].predict(data[0]).tolist()
print("RUNS " + json.dumps(runs))
print("PREDICTIONS " + json.dumps(predictions))
if "--load" in sys.argv:  # in this script's own context, as its author would
    assert mlhooks.flush(120)
    loaded = {}
    for name, run_id in runs.items():
        found = mlflow.search_runs(
            filter_string=f"tags.`mlhooks.run_id` = '{run_id}'", output_format="list"
        )
        uri = f"runs:/{found[0].info.run_id}/model"
        data = docs if name == "regex" else X
        try:
            by_flavor = mlflow.sklearn.load_model(uri).predict(data).tolist()
            by_pyfunc = (
                by_flavor if name == "regex"  # text goes through pyfunc as a DataFrame
                else np.asarray(mlflow.pyfunc.load_model(uri).predict(data)).tolist()
            )
            loaded[name] = [by_flavor, by_pyfunc]
        except Exception as error:
            loaded[name] = repr(error)
    print("LOADED " + json.dumps(loaded))
"""

SAVEABLE = ["main_function", "closure", "lambda", "main_class", "regex"]


def run_file(path: Path, *args: str, env: dict[str, str], cwd: Path) -> Any:
    """Run the script file ``path`` as ``__main__`` in a fresh interpreter (done once
    its writer service is)."""
    done = subprocess.run(
        [sys.executable, str(path), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "MLHOOKS_LOCAL_DIR" in env:
        wait_for_services(Path(env["MLHOOKS_LOCAL_DIR"]))
    return done


def printed(stdout: str, label: str) -> Any:
    """The JSON a script printed on the line starting with ``label``."""
    for line in stdout.splitlines():
        if line.startswith(label + " "):
            return json.loads(line[len(label) + 1 :])
    raise AssertionError(f"no {label} line in the script's output:\n{stdout}")


def mlhooks_cli(*args: str, root: Path, env: dict[str, str]) -> Any:
    return cli(*args, "--dir", str(root), root=root, env=env, timeout=900)


def stored_runs(client: MlflowClient) -> list[Any]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, max_results=50_000))


def by_mlhooks_id(client: MlflowClient) -> dict[str, Any]:
    """Every stored MLflow run by its mlhooks run id (each id once)."""
    runs = stored_runs(client)
    counts = Counter(run.data.tags.get(RUN_ID_TAG) for run in runs)
    assert max(counts.values(), default=1) == 1, "a run was stored twice"
    return {run.data.tags[RUN_ID_TAG]: run for run in runs}


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_models_of_the_users_script_are_stored_loadable_and_an_unsaveable_one_set_aside(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """Repro 12: a script's function, closure, lambda, class and a compiled regex inside
    pipelines are stored as MLflow models that load (``mlflow.sklearn`` and
    ``mlflow.pyfunc``, in the script's context) and predict as the fitted ones; a
    pipeline holding a lock is set aside with its reason (``mlhooks sync --rejected``)
    while its run's params, metrics and end, and the run after it, are stored. No
    outage: no spool besides ``rejected/``."""
    root = tmp_path / "mlhooks-runs"
    script = tmp_path / "train.py"
    script.write_text(MODELS_OF_A_SCRIPT)
    env = {"MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_BACKENDS": "mlflow", "MLHOOKS_STRICT": "0"}
    cases = [*SAVEABLE, "unsaveable", "after"]
    result = run_file(script, ",".join(cases), "--load", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is failing" not in result.stderr  # the backend never went down
    runs, predictions = printed(result.stdout, "RUNS"), printed(result.stdout, "PREDICTIONS")
    loaded = printed(result.stdout, "LOADED")

    for name in [*SAVEABLE, "after"]:
        assert loaded[name] == [predictions[name], predictions[name]], (name, loaded[name])
    assert "Failed to download artifacts" in loaded["unsaveable"]  # no model stored

    client = MlflowClient(mlflow_tracking_uri)
    stored = by_mlhooks_id(client)
    for name, run_id in runs.items():
        run = stored[run_id]
        assert run.info.status == "FINISHED", name
        assert run.data.params["case"] == name
        assert run.data.metrics["done"] == 1.0
        assert run.data.metrics["training_accuracy_score"] > 0.5
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        artifacts |= set(stored_models(client, run.info.run_id))  # MLflow 3: logged models
        assert ("model" in artifacts) == (name != "unsaveable"), (name, artifacts)
    assert stored[runs["unsaveable"]].data.params["logisticregression__max_iter"] == "300"

    spools = files_under(root / ".spool")
    assert spools and all(path.parent.name == "rejected" for path in spools), spools
    listed = mlhooks_cli("sync", "--rejected", root=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "1 rejected operations" in listed.stdout
    assert "LogModel" in listed.stdout and "cannot be pickled" in listed.stdout
    assert "_thread.lock" in listed.stdout
    retried = mlhooks_cli("sync", "--rejected", "--retry", root=root, env=env)
    assert retried.returncode == 0, retried.stderr  # refused again, kept aside, no crash
    assert "1 rejected operations" in mlhooks_cli("sync", "--rejected", root=root, env=env).stdout


def test_models_of_a_script_spooled_while_the_store_is_away_are_replayed_elsewhere(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """Repro 12, replay: the script's class and closure models, spooled while the
    server is down, are stored by ``mlhooks sync`` run from another folder (where the
    script's names do not exist), load in this process and predict as the fitted ones,
    with the input signature a live store records (the sample input survives the
    spool as an array, not its text)."""
    server = new_mlflow_server()  # its port stays closed until start()
    root = tmp_path / "mlhooks-runs"
    script = tmp_path / "train.py"
    script.write_text(MODELS_OF_A_SCRIPT)
    env = {
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_STRICT": "0",
        "MLHOOKS_RETRY_DELAYS": "0.01",
        "MLHOOKS_FLUSH_TIMEOUT": "5",
        "MLHOOKS_EXIT_TIMEOUT": "5",
        "MLFLOW_TRACKING_URI": server.uri,
    }
    result = run_file(script, "main_class,closure", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs, predictions = printed(result.stdout, "RUNS"), printed(result.stdout, "PREDICTIONS")
    assert files_under(root / ".spool")

    server.start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wait_for_services(root)
    done = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)],
        env={**os.environ, **env},
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert not files_under(root / ".spool" / "rejected"), done.stderr

    client = MlflowClient(server.uri)
    stored = by_mlhooks_id(client)
    X, _ = load_iris(return_X_y=True)
    mlflow.set_tracking_uri(server.uri)  # MLflow 3 finds a run's logged model through it
    try:
        for name, run_id in runs.items():
            run = stored[run_id]
            assert run.info.status == "FINISHED"
            local = client.download_artifacts(run.info.run_id, "model", str(tmp_path / name))
            model = mlflow.sklearn.load_model(local)
            assert model.predict(X).tolist() == predictions[name]
            signature = mlflow.models.get_model_info(local).signature
            assert signature is not None
            assert signature.inputs.input_types() == [np.dtype("float64")]
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: MLflow's default


XGBOOST_AND_LIGHTNING = """
import json
import numpy as np
import torch
import xgboost as xgb
import lightning.pytorch as pl
import mlflow
import mlhooks
from sklearn.datasets import load_breast_cancer
from torch.utils.data import DataLoader, TensorDataset


def logistic(labels, predt):  # a custom objective of the script
    p = 1.0 / (1.0 + np.exp(-predt))
    return p - labels, p * (1.0 - p)


def error_rate():
    def err(labels, predt):  # a closure metric: pickle refuses it
        return float(np.mean((predt > 0.5) != labels))
    return err


class Net(pl.LightningModule):  # a module of the script
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def local_module():
    class Local(Net):  # a class of a function: pickle refuses it
        pass
    return Local()


mlhooks.autolog()
X, y = load_breast_cancer(return_X_y=True)
X = X.astype("float32")
torch.manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(64, 4), torch.randn(64, 1)), batch_size=16)
fitted, runs = {}, {}
for name, model in {
    "xgb_objective": xgb.XGBClassifier(n_estimators=5, objective=logistic),
    "xgb_closure_metric": xgb.XGBClassifier(n_estimators=5, eval_metric=error_rate()),
}.items():
    with mlhooks.start_run(name) as run:
        fitted[name] = model.fit(X, y, eval_set=[(X, y)], verbose=False)
    runs[name] = run.run_id
for name, module in {"lightning_main": Net(), "lightning_local": local_module()}.items():
    with mlhooks.start_run(name) as run:
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(module, data)
        fitted[name] = module
    runs[name] = run.run_id
assert mlhooks.flush(120)
x = torch.randn(3, 4)
loaded = {}
for name, run_id in runs.items():
    found = mlflow.search_runs(
        filter_string=f"tags.`mlhooks.run_id` = '{run_id}'", output_format="list"
    )[0]
    uri = f"runs:/{found.info.run_id}/model"
    if name.startswith("xgb"):
        same = np.array_equal(mlflow.xgboost.load_model(uri).predict(X), fitted[name].predict(X))
    else:
        with torch.no_grad():
            same = torch.allclose(mlflow.pytorch.load_model(uri).layer(x), fitted[name].layer(x))
    loaded[name] = [found.info.status, bool(same)]
print("LOADED " + json.dumps(loaded))
"""


def test_xgboost_and_lightning_models_of_a_script_are_stored_loadable(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """The same class of model for XGBoost (a custom objective of the script, a closure
    metric) and Lightning (a module of the script, a module class defined in a
    function): each run FINISHED with an MLflow model that loads in the script and
    predicts as the fitted one."""
    script = tmp_path / "train.py"
    script.write_text(XGBOOST_AND_LIGHTNING)
    env = {"MLHOOKS_LOCAL_DIR": str(tmp_path / "mlhooks-runs"), "MLHOOKS_BACKENDS": "mlflow"}
    result = run_file(script, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is failing" not in result.stderr and "rejected" not in result.stderr
    loaded = printed(result.stdout, "LOADED")
    assert loaded == {
        name: ["FINISHED", True]
        for name in ("xgb_objective", "xgb_closure_metric", "lightning_main", "lightning_local")
    }


REFUSED_MODEL = """
import sys
import mlhooks
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlhooks.autolog(registered_model_name=sys.argv[1] or None)
X, y = load_iris(return_X_y=True)
with mlhooks.start_run("fit"):
    mlhooks.log_param("case", "fit")
    LogisticRegression(max_iter=300).fit(X, y)
    mlhooks.log_metric("done", 1.0)
with mlhooks.start_run("after"):
    mlhooks.log_metric("after", 2.0)
"""


def refusing(tracking_uri: str, trigger: str) -> Callable[[], None]:
    """Install ``trigger`` in the sqlite store at ``tracking_uri``; returns what drops it."""
    import sqlite3

    database = tracking_uri[len("sqlite:///") :]
    name = trigger.split()[2]
    with sqlite3.connect(database) as connection:
        connection.execute(trigger)

    def drop() -> None:
        with sqlite3.connect(database) as connection:
            connection.execute(f"DROP TRIGGER {name}")

    return drop


def the_rest_is_stored(client: MlflowClient) -> dict[str, Any]:
    runs = {run.info.run_name: run for run in stored_runs(client)}
    assert sorted(runs) == ["after", "fit"]
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert runs["fit"].data.params["case"] == "fit"
    assert runs["fit"].data.metrics["done"] == 1.0
    assert runs["fit"].data.metrics["training_accuracy_score"] > 0.5
    assert runs["after"].data.metrics["after"] == 2.0
    return runs


def test_a_registry_that_refuses_leaves_the_model_stored_and_one_warning(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """autolog(registered_model_name=...) into a registry that refuses new versions:
    the model is stored (a READY logged model of its run, loadable), the run and the
    run after it are stored whole, the user is told once, and the registration waits
    in ``rejected/``: ``mlhooks sync --rejected --retry`` registers that same model
    once the registry takes it, without storing it twice."""
    root = tmp_path / "mlhooks-runs"
    script = tmp_path / "train.py"
    script.write_text(REFUSED_MODEL)
    drop = refusing(
        mlflow_tracking_uri,
        "CREATE TRIGGER refuse_versions BEFORE INSERT ON model_versions "
        "BEGIN SELECT RAISE(ABORT, 'the registry refuses new versions'); END",
    )
    env = {"MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_BACKENDS": "mlflow", "MLHOOKS_STRICT": "0"}
    result = run_file(script, "iris", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MlhooksWarning") == 1, result.stderr
    assert "registry refused to register it as 'iris'" in result.stderr

    client = MlflowClient(mlflow_tracking_uri)
    runs = the_rest_is_stored(client)
    (model,) = client.search_logged_models([runs["fit"].info.experiment_id])
    assert model.status == "READY" and model.source_run_id == runs["fit"].info.run_id
    assert "mlhooks.model_version" not in model.tags
    X, y = load_iris(return_X_y=True)
    assert (mlflow.sklearn.load_model(f"models:/{model.model_id}").predict(X) == y).mean() > 0.9
    assert client.search_model_versions("name='iris'") == []
    assert [p.parent.name for p in files_under(root / ".spool")] == ["rejected"]

    drop()
    retried = mlhooks_cli("sync", "--rejected", "--retry", root=root, env=env)
    assert retried.returncode == 0, retried.stderr
    (version,) = client.search_model_versions("name='iris'")
    assert version.source == f"models:/{model.model_id}"
    assert version.run_id == runs["fit"].info.run_id
    (again,) = client.search_logged_models([runs["fit"].info.experiment_id])
    assert again.model_id == model.model_id  # registered, not stored a second time
    assert again.tags["mlhooks.model_version"] == "iris/1"


def test_a_model_id_the_store_refuses_is_set_aside_with_one_warning(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """The store creates the logged model, then refuses its id (it was deleted at
    once): the model is set aside in ``rejected/`` with the reason, marked FAILED, the
    user is told once, and everything else of the run and the run after it is stored."""
    root = tmp_path / "mlhooks-runs"
    script = tmp_path / "train.py"
    script.write_text(REFUSED_MODEL)
    refusing(
        mlflow_tracking_uri,
        "CREATE TRIGGER refuse_models AFTER INSERT ON logged_models "
        "BEGIN UPDATE logged_models SET lifecycle_stage = 'deleted' "
        "WHERE model_id = NEW.model_id; END",
    )
    env = {"MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_BACKENDS": "mlflow", "MLHOOKS_STRICT": "1"}
    result = run_file(script, "", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MlhooksWarning") == 1, result.stderr
    assert "MLflow refused model 'model'" in result.stderr and "not found" in result.stderr

    client = MlflowClient(mlflow_tracking_uri)
    the_rest_is_stored(client)
    listed = mlhooks_cli("sync", "--rejected", root=root, env=env)
    assert "1 rejected operations" in listed.stdout and "LogModel" in listed.stdout
    import sqlite3

    from mlflow.entities import LoggedModelStatus

    with sqlite3.connect(mlflow_tracking_uri[len("sqlite:///") :]) as connection:
        (status,) = connection.execute("SELECT status FROM logged_models").fetchall()
    assert LoggedModelStatus.from_int(status[0]) == LoggedModelStatus.FAILED


MANY_FITS = """
import sys
import mlhooks
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlhooks.autolog()
X, y = load_iris(return_X_y=True)
for i in range(int(sys.argv[1])):
    LogisticRegression(max_iter=200, C=1.0 + i / 1000).fit(X, y)
"""
BYTES_PER_RUN_LIMIT = 10_000
"""What a run not stored by exit may leave on disk (spool, snapshots), on average.

Such a run's own data, as JSON lines, is about 4.6 KB here: 14 params, 8 metrics,
two dataset fingerprints, its 0.8 KB model and the model's 5-row sample input, and
~1 KB of run-context tags. The run context's files (~4 KB, most of it the list of
installed distributions, which reaches tens of KB in large environments) are shared
by the runs of a few seconds. Anything kept once per run beyond that (a copy of the
context or of a model's environment) breaks the limit."""


def test_many_small_fits_that_outlive_the_process_are_small_on_disk_and_synced_once(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """Repro 14, scaled down: 300 fits, one run each, and an exit that waits for
    nothing (``MLHOOKS_EXIT_TIMEOUT=0``): what is not stored stays on disk at under
    10 KB a run, and ``mlhooks sync`` then stores all 300 runs, once each, complete
    (params, metrics, datasets, a loadable model with its signature, FINISHED)."""
    runs = 300
    root = tmp_path / "mlhooks-runs"
    script = tmp_path / "many.py"
    script.write_text(textwrap.dedent(MANY_FITS))
    env = {
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_STRICT": "0",
        "MLHOOKS_EXIT_TIMEOUT": "0",
    }
    result = run_file(script, str(runs), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client = MlflowClient(mlflow_tracking_uri)
    finished_by_exit = sum(run.info.status == "FINISHED" for run in stored_runs(client))
    left = runs - finished_by_exit
    assert left > 0, "every run was stored before exit: nothing to measure"
    left_bytes = sum(path.stat().st_size for path in files_under(root))
    per_run = left_bytes / left
    print(f"\n{left} of {runs} runs left at exit: {left_bytes} bytes, {per_run:.0f} per run")
    assert per_run < BYTES_PER_RUN_LIMIT

    done = mlhooks_cli("sync", root=root, env=env)
    assert done.returncode == 0, done.stderr
    assert not files_under(root / ".spool" / "rejected"), done.stderr
    stored = by_mlhooks_id(client)
    assert len(stored) == runs
    shapes = Counter(
        (
            run.info.status,
            len(run.data.params),
            tuple(sorted(run.data.metrics)),
            len(run.inputs.dataset_inputs),
        )
        for run in stored.values()
    )
    assert len(shapes) == 1, shapes  # every run complete, as the live ones
    ((status, params, metrics, datasets),) = shapes
    assert (status, params, datasets) == ("FINISHED", 14, 2)
    assert "training_accuracy_score" in metrics
    for run in stored.values():
        history = client.get_metric_history(run.info.run_id, "training_accuracy_score")
        assert len(history) == 1  # no point twice
    X, y = load_iris(return_X_y=True)
    last = max(stored.values(), key=lambda run: run.info.start_time)  # among the synced
    uri = f"runs:/{last.info.run_id}/model"
    assert (mlflow.sklearn.load_model(uri).predict(X) == y).mean() > 0.9
    signature = mlflow.models.get_model_info(uri).signature
    assert signature is not None and signature.inputs.input_types() == [np.dtype("float64")]
