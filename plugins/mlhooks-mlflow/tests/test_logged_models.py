"""Every model mlhooks stores is an MLflow 3 logged model (issue 15, item 1): found
through ``mlflow.search_logged_models`` with its source run, params and metrics,
loadable by ``models:/<id>``; the same fits on the local store come back through
``mlhooks.load_model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import mlflow
import numpy as np
import pytest
import torch
import xgboost as xgb
from mlflow.tracking import MlflowClient
from sklearn import metrics
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, TensorDataset

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG
from mlhooks_mlflow.testing import also_on_team_server, requires_mlflow3

mlflow3 = requires_mlflow3("logged models")
torch.set_num_threads(1)
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


class Regressor(L.LightningModule):
    """3 -> 4 -> 1, ``loss`` every step and epoch, ``val_loss`` every epoch."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)


def fit_three(folder: Path) -> dict[str, Any]:
    """A scikit-learn pipeline, an XGBoost booster and a Lightning module with a
    checkpoint callback, each fitted (and tracked) in a run of its own; what they
    predict, by framework."""
    X, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    metrics.accuracy_score(y, pipeline.predict(X))  # logged to the fit's run after it ended
    Xd, yd = load_diabetes(return_X_y=True)
    dtrain = xgb.DMatrix(Xd, label=yd)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1}
    booster = xgb.train(params, dtrain, 8, evals=[(dtrain, "train")], verbose_eval=False)
    keeper = L.callbacks.ModelCheckpoint(dirpath=folder, monitor="val_loss", save_top_k=2)
    module = Regressor()
    L.Trainer(max_epochs=3, callbacks=[keeper], accelerator="cpu", **QUIET).fit(
        module, loader(0), loader(1)
    )
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch_out = module(x).numpy()
    return {  # inputs of the framework, inputs of pyfunc, predictions
        "sklearn": (X, X, pipeline.predict(X)),
        "xgboost": (xgb.DMatrix(Xd), Xd, booster.predict(xgb.DMatrix(Xd))),
        "pytorch": (x, None, torch_out),  # pyfunc takes an array, not a tensor
        "best": keeper.best_model_path,
        "kept": dict(keeper.best_k_models),
    }


def predict(flavor: str, model: Any, inputs: Any) -> Any:
    if flavor == "pytorch":
        with torch.no_grad():
            return model(inputs).numpy()
    return model.predict(inputs)


@mlflow3
@also_on_team_server
def test_autologged_models_are_mlflow_logged_models_of_their_runs(
    tracking_uri: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri)
    mlhooks.autolog()
    fitted = fit_three(tmp_path / "ckpt")
    assert mlhooks.flush(120)

    experiments = [e.experiment_id for e in client.search_experiments()]
    logged = list(client.search_logged_models(experiments))
    finals = {m.tags["mlhooks.flavor"]: m for m in logged if "mlhooks.step" not in m.tags}
    assert sorted(finals) == ["pytorch", "sklearn", "xgboost"]
    for flavor, model in finals.items():
        assert model.status == "READY" and model.name == "model"
        run = client.get_run(model.source_run_id)
        assert run.info.status == "FINISHED"
        assert model.tags[RUN_ID_TAG] == run.data.tags[RUN_ID_TAG]
        assert [
            (o.model_id, o.step) for o in run.outputs.model_outputs if o.model_id == model.model_id
        ] == [(model.model_id, 0)]
        assert model.params and model.params.items() <= run.data.params.items()
        linked = {m.key: m.value for m in model.metrics}
        assert linked == run.data.metrics  # the run's final value of every metric
        inputs, plain_inputs, expected = fitted[flavor]
        by_flavor = getattr(mlflow, flavor).load_model(f"models:/{model.model_id}")
        np.testing.assert_allclose(predict(flavor, by_flavor, inputs), expected, rtol=1e-6)
        if plain_inputs is not None:
            pyfunc = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
            predicted = np.asarray(pyfunc.predict(plain_inputs))
            np.testing.assert_allclose(predicted, expected, rtol=1e-6)
        assert mlhooks.load_model(model.source_run_id) is not None  # by the MLflow run id too
    sklearn_metrics = {m.key: m.dataset_name for m in finals["sklearn"].metrics}
    assert sklearn_metrics["training_accuracy_score"] == "X"  # the training data
    assert "accuracy_score_X" in sklearn_metrics  # computed on its predictions, after the fit
    assert {m.key: m.dataset_name for m in finals["xgboost"].metrics}["train-rmse"] == "train"
    assert finals["sklearn"].params["logisticregression__max_iter"] == "300"
    assert finals["xgboost"].params["max_depth"] == "3"
    assert finals["pytorch"].params["lr"] == "0.05"

    # Lightning's checkpoints: logged models of their step, with the monitored value
    checkpoints = [m for m in logged if m.tags.get("mlhooks.flavor") == "lightning_checkpoint"]
    assert len(checkpoints) == 3  # one per epoch, whatever save_top_k deleted since
    run = client.get_run(finals["pytorch"].source_run_id)
    steps = {o.model_id: o.step for o in run.outputs.model_outputs}
    for checkpoint in checkpoints:
        assert checkpoint.source_run_id == run.info.run_id and checkpoint.status == "READY"
        assert checkpoint.tags["mlhooks.monitor"] == "val_loss"
        step = int(checkpoint.tags["mlhooks.step"])
        assert steps[checkpoint.model_id] == step == int(checkpoint.tags["mlhooks.global_step"])
        linked = {m.key: m.value for m in checkpoint.metrics}
        assert linked["val_loss"] == pytest.approx(float(checkpoint.tags["mlhooks.score"]))
        name = checkpoint.tags["mlhooks.model_name"]
        assert checkpoint.name == name.replace("/", "-")
        path = mlhooks.load_model(run.data.tags[RUN_ID_TAG], name)
        assert path.name == name.split("/")[-1] + ".ckpt"
        assert torch.load(path, weights_only=False)["global_step"] == step
    best = client.search_logged_models(
        experiments,
        filter_string="tags.`mlhooks.flavor` = 'lightning_checkpoint'",
        order_by=[{"field_name": "metrics.val_loss", "ascending": True}],
    )[0]
    assert best.tags["mlhooks.model_name"] == f"checkpoints/{Path(fitted['best']).stem}"

    # mlhooks.search_models joins mlhooks.search_runs on run_id
    runs = mlhooks.search_runs()
    models = mlhooks.search_models(filter_string="name = 'model'")
    joined = runs.merge(models, on="run_id", suffixes=("", "_model"))
    assert sorted(joined["flavor"]) == ["pytorch", "sklearn", "xgboost"]
    assert set(joined["model_id"]) == {m.model_id for m in finals.values()}


def test_the_same_fits_on_the_local_store_load_back_through_mlhooks(tmp_path: Path) -> None:
    mlhooks.autolog(backends=["local"])
    fitted = fit_three(tmp_path / "ckpt")
    models = mlhooks.search_models(backend="local")
    finals = models[models["name"] == "model"]
    assert sorted(finals["flavor"]) == ["pytorch", "sklearn", "xgboost"]
    for row in finals.itertuples():
        inputs, _, expected = fitted[row.flavor]
        loaded = mlhooks.load_model(row.run_id, backend="local")
        np.testing.assert_allclose(predict(row.flavor, loaded, inputs), expected, rtol=1e-6)
    checkpoints = models[models["flavor"] == "lightning_checkpoint"]
    assert sorted(checkpoints["step"]) == [4, 8, 12]
    for row in checkpoints.itertuples():
        path = mlhooks.load_model(row.run_id, row.name, backend="local")
        assert torch.load(path, weights_only=False)["global_step"] == row.step
    best = mlhooks.search_models(
        filter_string="flavor = 'lightning_checkpoint'",
        order_by=["metrics.val_loss ASC"],
        backend="local",
    ).iloc[0]
    assert best["name"] == f"checkpoints/{Path(fitted['best']).stem}"
    with pytest.raises(KeyError, match="no model 'missing'"):
        mlhooks.load_model(best["run_id"], "missing", backend="local")


@mlflow3
@also_on_team_server
def test_autolog_registers_each_fits_model_per_framework_too(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    mlhooks.autolog(registered_model_name="boosters", sklearn={"registered_model_name": "iris"})
    X, y = load_iris(return_X_y=True)
    LogisticRegression(max_iter=300).fit(X, y)
    LogisticRegression(max_iter=200).fit(X, y)
    xgb.train({"nthread": 1}, xgb.DMatrix(X, label=y), 3)
    assert mlhooks.flush(120)
    versions = {
        name: sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        for name in ("iris", "boosters")
    }
    assert versions == {"iris": [1, 2], "boosters": [1]}
    (booster,) = client.search_model_versions("name='boosters'")
    model = client.get_logged_model(booster.source.removeprefix("models:/"))
    assert model.tags["mlhooks.flavor"] == "xgboost"
    assert model.tags["mlhooks.model_version"] == "boosters/1"
    assert booster.run_id == model.source_run_id
    loaded = mlflow.xgboost.load_model("models:/boosters/1")
    assert loaded.num_boosted_rounds() == 3


@mlflow3
def test_load_model_reads_the_backends_own_store(tmp_path: Path) -> None:
    """A backend writing elsewhere than MLflow's tracking URI (which MLflow resolves
    ``models:/`` URIs through) still loads its models back."""
    from mlhooks_mlflow import MlflowBackend

    backend = MlflowBackend(tracking_uri=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with mlhooks.start_run("elsewhere", backends=[backend]) as run:
        mlhooks.log_model({"weights": [1.0, 2.0]})
    assert mlhooks.load_model(run, backend=backend) == {"weights": [1.0, 2.0]}
    assert mlflow.get_tracking_uri() != backend.tracking_uri
    (row,) = mlhooks.search_models(backend=backend).to_dict("records")
    assert (row["name"], row["flavor"], row["status"]) == ("model", "python", "READY")


@mlflow3
def test_a_step_loop_after_the_fit_links_the_latest_values_to_its_model(
    tracking_uri: str,
) -> None:
    """A run that goes on logging steps after its model (an autologged fit, then a loop
    of manual metrics) keeps every point; its model gets the latest value of each
    write (one row per batch, not per point: each linked point is a second row for
    the store), and the final value when the run ends."""
    client = MlflowClient(tracking_uri)
    mlhooks.autolog()
    X, y = load_iris(return_X_y=True)
    with mlhooks.start_run("loop after fit") as run:
        LogisticRegression(max_iter=300).fit(X, y)
        assert mlhooks.flush(60)  # the model is stored: what follows comes after it
        for step in range(3000):
            mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
            if step == 1499:
                assert mlhooks.flush(60)  # two writes
    mlflow_id = client.search_runs(["0"], f"tags.`{RUN_ID_TAG}` = '{run.run_id}'")[0].info.run_id
    assert [m.step for m in client.get_metric_history(mlflow_id, "loss")] == list(range(3000))
    (model,) = client.search_logged_models(["0"], filter_string=f"source_run_id = '{mlflow_id}'")
    linked = sorted((m.step, m.value) for m in model.metrics if m.key == "loss")
    assert linked[-1] == (2999, 1.0 / 3000)
    assert 2 <= len(linked) <= 100  # each write's latest (1,499 and 2,999, and a write
    # the writer may have begun mid-loop), never every point
