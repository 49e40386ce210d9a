"""Models MLflow's default format refuses, and models that cannot be saved at all, against
a real sqlite store (issue 13, repro 12)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import threading
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils import environment
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import mlhooks
from mlhooks import MlhooksWarning
from mlhooks.capture.models import capture
from mlhooks.plugin import BackendError, ModelArtifact
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow.models import save_mlflow_model
from mlhooks_mlflow.testing import mlflow_run_of


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


WORD = re.compile(r"[a-z]+")


def test_models_skops_refuses_are_stored_and_load(client: MlflowClient) -> None:
    """A closure in a pipeline and a compiled regular expression (skops refuses both,
    and MLflow used to report it as a server error, so the backend went down)."""
    X, y = load_iris(return_X_y=True)
    factor = 0.5
    closure = make_pipeline(FunctionTransformer(lambda x: x * factor), LogisticRegression())
    docs, labels = ["red apple", "green pear"] * 10, [0, 1] * 10
    regex = make_pipeline(CountVectorizer(tokenizer=WORD.findall, token_pattern=None),
                          LogisticRegression())  # fmt: skip
    with mlhooks.start_run("models") as run:
        mlhooks.log_model(closure.fit(X, y), name="closure", sample_input=X[:5])
        mlhooks.log_model(regex.fit(docs, labels), name="regex")
    mlflow_id = mlflow_run_of(client, run.run_id).info.run_id
    closure_loaded = mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/closure")
    np.testing.assert_array_equal(closure_loaded.predict(X), closure.predict(X))
    regex_loaded = mlflow.sklearn.load_model(f"runs:/{mlflow_id}/regex")
    assert regex_loaded.predict(docs).tolist() == labels


def test_an_unsaveable_model_is_set_aside_with_why_and_the_run_goes_on(
    client: MlflowClient,
) -> None:
    session = mlhooks.plugin.FitSession("manual", "guarded")
    session.start()
    with pytest.warns(MlhooksWarning, match=r"rejected an operation.*_thread\.lock"):
        session.log_model({"guard": threading.Lock()}, name="model")
        session.log_metrics({"loss": 0.5}, step=0)
        session.end()
        assert session.fit is not None
        stored = mlflow_run_of(client, session.fit.run.run_id)
    assert stored.info.status == "FINISHED" and stored.data.metrics == {"loss": 0.5}
    assert "model" not in {a.path for a in client.list_artifacts(stored.info.run_id)}


def test_a_model_whose_code_is_missing_here_is_refused_for_good(tmp_path: Path) -> None:
    """A replay where the model's module cannot be imported: not a server error to
    retry forever, but a refusal saying where to replay it."""
    missing = b"cnowhere_to_be_found\nModel\n(tR."  # a pickle of nowhere_to_be_found.Model()
    artifact = ModelArtifact(name="model", flavor="sklearn", payload=missing)
    with pytest.raises(BackendError, match="cannot be rebuilt in this process") as caught:
        save_mlflow_model(artifact, str(tmp_path))
    assert not MlflowBackend().is_retryable(caught.value)


def test_a_model_its_flavor_cannot_save_is_refused_for_good(tmp_path: Path) -> None:
    artifact = ModelArtifact(name="model", flavor="xgboost", payload=b"\x80\x04K\x01.")  # 1
    with pytest.raises(BackendError, match="MLflow cannot save model 'model'") as caught:
        save_mlflow_model(artifact, str(tmp_path))
    assert not MlflowBackend().is_retryable(caught.value)


def test_a_model_kept_as_a_folder_is_saved_as_its_files(tmp_path: Path) -> None:
    """A model of a flavor MLflow does not know, reported as a folder (format
    ``directory``): its files, nested ones too, with its facts beside them."""
    folder = tmp_path / "saved"
    (folder / "weights").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "weights" / "part-1.bin").write_bytes(b"\x00\x01")
    artifact = ModelArtifact(
        name="model", flavor="folders", path=str(folder), format="directory", metadata={"k": 2}
    )
    target = Path(save_mlflow_model(artifact, str(tmp_path / "out")))
    assert (target / "config.json").read_text() == "{}"
    assert (target / "weights" / "part-1.bin").read_bytes() == b"\x00\x01"
    assert json.loads((target / "mlhooks-model.json").read_text()) == {"flavor": "folders", "k": 2}


def test_a_transformers_model_whose_folder_is_gone_is_refused_for_good(tmp_path: Path) -> None:
    artifact = ModelArtifact(
        name="model", flavor="transformers", path=str(tmp_path / "gone"), format="directory"
    )
    with pytest.raises(BackendError, match="has no folder to store") as caught:
        save_mlflow_model(artifact, str(tmp_path / "out"))
    assert not MlflowBackend().is_retryable(caught.value)


def test_mlhooks_saves_skip_mlflows_requirement_check_and_others_keep_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow checks a saved model's requirements against the environment on every
    save. mlhooks' requirements are what is installed here: its saves skip the check
    (what they write is unchanged: every requirement pinned to the installed version),
    a save of the program's own still warns of a mismatch."""
    X, y = load_iris(return_X_y=True)
    artifact = capture(LogisticRegression(max_iter=500).fit(X, y), name="model")
    target = Path(save_mlflow_model(artifact, str(tmp_path / "ours")))
    pins = dict(
        line.split("==", 1)
        for line in (target / "requirements.txt").read_text().splitlines()
        if "==" in line
    )
    assert pins["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert pins["mlflow"] == importlib.metadata.version("mlflow")

    with caplog.at_level("WARNING", logger="mlflow"):
        environment.warn_dependency_requirement_mismatches(["scikit-learn==0.0.1"])
    assert "Detected one or more mismatches" in caplog.text
