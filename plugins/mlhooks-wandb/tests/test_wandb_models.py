"""Models back from W&B offline runs through ``mlhooks.load_model`` (issue 15, item 5):
from the staged copies of the run's ``model`` artifacts, which stay on this machine
until ``wandb sync`` uploads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
from mlhooks import LocalStore
from mlhooks.plugin import EndRun, LogModel, ModelArtifact, RunInfo
from mlhooks_wandb import WandbBackend, reading

START = 1_700_000_000_000


def test_an_autologged_model_loads_back_as_it_predicted(wandb_dir: Path) -> None:
    import mlhooks_sklearn  # noqa: F401  (the plugin's test extra installs it)

    mlhooks.autolog(backends=["wandb", "local"])
    X, y = load_diabetes(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=0.5)).fit(X, y)
    assert mlhooks.flush(60)
    (run_id,) = LocalStore().run_ids()  # the fit's run, in W&B too

    loaded = mlhooks.load_model(run_id, backend="wandb")
    assert loaded is not pipeline
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_a_checkpoint_stored_every_epoch_loads_as_its_latest_file(
    wandb_dir: Path, tmp_path: Path
) -> None:
    backend = WandbBackend()
    run = RunInfo("d" * 32, "checkpoints")
    backend.start_run(run)
    checkpoint = tmp_path / "last.ckpt"
    for step in (20, 10):  # stored out of step order: the latest step wins, not the last
        checkpoint.write_bytes(f"weights at step {step}".encode())
        artifact = ModelArtifact(
            "checkpoints/last", "lightning-checkpoint", path=str(checkpoint),
            format="file", metadata={"global_step": step},
        )  # fmt: skip
        backend.log_model(LogModel(run.run_id, artifact))
    backend.end_run(EndRun(run.run_id, "FINISHED", START))
    checkpoint.write_bytes(b"rewritten after the run")

    path = mlhooks.load_model(run.run_id, name="checkpoints/last", backend=backend)
    assert isinstance(path, Path) and path.name == "last.ckpt"
    assert path.read_bytes() == b"weights at step 20"
    path.write_bytes(b"changed by the user")  # a copy: what W&B stored stays
    again = mlhooks.load_model(run.run_id, name="checkpoints/last", backend=backend)
    assert again.read_bytes() == b"weights at step 20"


def test_what_is_not_there_is_named(wandb_dir: Path) -> None:
    with mlhooks.start_run("one model", backends="wandb") as run:
        mlhooks.log_model({"weights": [1, 2]}, name="model")
    assert mlhooks.load_model(run, backend="wandb") == {"weights": [1, 2]}

    with pytest.raises(KeyError, match="has no model 'best' in W&B; its models: model"):
        mlhooks.load_model(run, name="best", backend="wandb")
    with pytest.raises(KeyError, match="has no W&B run folder"):
        mlhooks.load_model("0" * 32, backend="wandb")

    # Uploaded by `wandb sync`, W&B cleans its staged copy up: then the model is named
    # with the command that downloads it.
    stored = reading.load_run(wandb_dir, run.run_id)
    for local in stored.artifact("model").files.values():
        Path(local).unlink()
    with pytest.raises(FileNotFoundError, match=f"wandb artifact get .*/model-{run.run_id}"):
        mlhooks.load_model(run, backend="wandb")
