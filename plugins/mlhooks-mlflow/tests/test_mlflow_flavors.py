"""Models of each flavor, captured by mlhooks and loaded back through MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks_mlflow.testing import mlflow_run_of

torch = pytest.importorskip("torch", reason="the pytorch flavor needs torch")
xgboost = pytest.importorskip("xgboost", reason="the xgboost flavor needs xgboost")


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    return X, X @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


def logged(client: MlflowClient, model: object, sample: np.ndarray) -> str:
    with mlhooks.start_run("flavor") as run:
        mlhooks.log_model(model, name="model", sample_input=sample)
    return f"runs:/{mlflow_run_of(client, run.run_id).info.run_id}/model"


def test_an_xgboost_model(tracking_uri: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    model = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    uri = logged(MlflowClient(tracking_uri), model, X[:5])
    np.testing.assert_array_equal(mlflow.xgboost.load_model(uri).predict(X), model.predict(X))
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_array_equal(pyfunc.predict(X), model.predict(X))
    assert pyfunc.metadata.flavors.keys() >= {"xgboost", "python_function"}


def test_a_raw_booster(tracking_uri: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(X, label=y), num_boost_round=10)
    uri = logged(MlflowClient(tracking_uri), booster, X[:5])
    loaded = mlflow.xgboost.load_model(uri)
    np.testing.assert_array_equal(
        loaded.predict(xgboost.DMatrix(X)), booster.predict(xgboost.DMatrix(X))
    )


def test_a_pytorch_model(tracking_uri: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    uri = logged(MlflowClient(tracking_uri), model, X[:5])
    with torch.no_grad():
        model[0].weight.add_(1.0)  # a later training step must not change what was logged
    loaded = mlflow.pytorch.load_model(uri)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(X)).numpy(), expected, rtol=1e-6)
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(X)), expected, rtol=1e-6)
