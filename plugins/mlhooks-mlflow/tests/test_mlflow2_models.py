"""With MLflow 2 (run in an environment of the oldest MLflow the plugin supports, 2.14),
models stay where mlhooks stored them before logged models: among their runs'
artifacts, registered from there; ``mlhooks.load_model`` finds them."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG

LOGGED_MODELS = hasattr(MlflowClient, "create_logged_model")


@pytest.mark.skipif(LOGGED_MODELS, reason="MLflow 3 stores logged models")
def test_mlflow2_keeps_models_among_the_runs_artifacts(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    mlhooks.autolog(registered_model_name="iris")
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    assert mlhooks.flush(120)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "model" in {a.path for a in client.list_artifacts(run.info.run_id)}
    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    again = mlhooks.load_model(run.data.tags[RUN_ID_TAG])
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    (version,) = client.search_model_versions("name='iris'")
    assert version.run_id == run.info.run_id
    with pytest.raises(ValueError, match="needs MLflow 3's logged models"):
        mlhooks.search_models()
