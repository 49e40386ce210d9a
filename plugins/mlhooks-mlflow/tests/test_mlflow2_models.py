"""With MLflow 2 (the ``mlflow2`` nox session runs this folder on the oldest MLflow the
plugin supports, 2.14), models stay where mlhooks stored them before logged models:
among their runs' artifacts, registered from there; ``mlhooks.load_model`` finds them.
A backend on a server of its own keeps its artifacts and models there, whatever
MLflow's own tracking URI (which MLflow 2 resolves a server's artifact locations
against)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG, MlflowBackend
from mlhooks_mlflow.testing import MlflowServer, mlflow_run_of

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


def test_a_backend_keeps_its_artifacts_and_models_on_its_own_server(
    tracking_uri: str, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """MLflow's own URI is another store (the test's sqlite one): MLflow 2 would resolve
    the server's proxied artifact locations (``mlflow-artifacts:/...``) against it."""
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    notes = tmp_path / "notes.txt"
    notes.write_text("served")
    backend = MlflowBackend(tracking_uri=mlflow_server.uri, experiment="own-server")
    with mlhooks.start_run("served", backends=[backend]) as run:
        mlhooks.log_artifact(str(notes))
        mlhooks.log_model(model, name="model")
    stored = mlflow_run_of(MlflowClient(mlflow_server.uri), run.run_id)
    assert stored.info.status == "FINISHED"
    loaded = backend.load_model(run.run_id, "model")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert mlflow.get_tracking_uri() == tracking_uri
    assert MlflowClient(tracking_uri).search_runs(["0"]) == []  # nothing went there
    mlflow.set_tracking_uri(mlflow_server.uri)  # MLflow 2 lists a proxied run's artifacts so
    listed = {a.path for a in MlflowClient(mlflow_server.uri).list_artifacts(stored.info.run_id)}
    assert "notes.txt" in listed
