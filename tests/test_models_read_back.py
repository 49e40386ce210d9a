"""Models back from the stores without MLflow: ``mlhooks.load_model`` and
``mlhooks.search_models`` on the local and in-memory stores."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import mlhooks
from mlhooks.backends.local import LocalBackend
from mlhooks.delivery.staging import staging_root
from mlhooks.plugin import FitSession, FrameworkOptions, ModelArtifact
from mlhooks.testing import RecordedRuns


class Scaler:
    """A model of this test module: pickled by reference, loadable here."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, values: list[float]) -> list[float]:
        return [v * self.factor for v in values]


def checkpoint(folder: Path, epoch: int, score: float) -> ModelArtifact:
    path = folder / f"epoch={epoch}.ckpt"
    path.write_bytes(f"weights of epoch {epoch}".encode())
    return ModelArtifact(
        name=f"checkpoints/epoch={epoch}",
        flavor="lightning_checkpoint",
        path=str(path),
        format="file",
        metadata={"monitor": "val_loss", "score": score, "epoch": epoch, "global_step": 10 * epoch},
    )


def a_run_with_models(folder: Path, backend: object) -> str:
    """A run with a model logged by hand, a refit logged again under the same name,
    and two checkpoints a fit reported; returns its id."""
    with mlhooks.start_run("scaled", backends=[backend], experiment="models") as run:
        mlhooks.log_param("factor", 2.0)
        mlhooks.log_metric("val_loss", 0.5, step=0)
        mlhooks.log_metric("val_loss", 0.25, step=1)
        model = Scaler(2.0)
        mlhooks.log_model(model, name="model", registered_model_name="scalers")
        model.factor = 3.0  # changed after logging: not what was stored
        session = FitSession("demo", "fit", settings=FrameworkOptions())
        session.start()
        session.model_saved(checkpoint(folder, 1, 0.5))
        session.model_saved(checkpoint(folder, 2, 0.25))
        session.end()
    return run.run_id


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path, mlhooks_memory: RecordedRuns) -> object:
    return LocalBackend(tmp_path / "runs") if request.param == "local" else mlhooks_memory.backend


def test_a_model_loads_back_as_it_was_logged(store: object, tmp_path: Path) -> None:
    run_id = a_run_with_models(tmp_path, store)
    loaded = mlhooks.load_model(run_id, backend=store)
    assert isinstance(loaded, Scaler) and loaded.predict([1.0]) == [2.0]
    path = mlhooks.load_model(run_id, "checkpoints/epoch=2", backend=store)
    assert isinstance(path, Path) and path.read_bytes() == b"weights of epoch 2"
    with pytest.raises(KeyError, match=r"no model 'best'; its models: checkpoints/epoch=1, "):
        mlhooks.load_model(run_id, "best", backend=store)


def test_load_model_takes_what_start_run_returned(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    with mlhooks.start_run("mine", backends=[backend]) as run:
        mlhooks.log_model(Scaler(4.0))
    assert mlhooks.load_model(run, backend=backend).factor == 4.0
    assert mlhooks.load_model(run.info, backend=backend).factor == 4.0
    with pytest.raises(TypeError, match="a run id or a run"):
        mlhooks.load_model(42, backend=backend)


def test_models_as_rows_filtered_and_ordered(store: object, tmp_path: Path) -> None:
    run_id = a_run_with_models(tmp_path, store)
    frame = mlhooks.search_models(experiment="models", backend=store)
    rows = {row["name"]: row for row in frame.to_dict("records")}
    assert sorted(rows) == ["checkpoints/epoch=1", "checkpoints/epoch=2", "model"]
    final = rows["model"]
    assert (final["run_id"], final["flavor"], final["status"]) == (run_id, "python", "READY")
    assert final["metrics.val_loss"] == 0.25 and final["params.factor"] == "2.0"
    assert final["tags.mlhooks.registered_model_name"] == "scalers"
    assert rows["checkpoints/epoch=1"]["step"] == 10
    assert rows["checkpoints/epoch=1"]["metrics.val_loss"] == 0.5
    best = mlhooks.search_models(
        filter_string="flavor = 'lightning_checkpoint'",
        order_by=["metrics.val_loss ASC"],
        backend=store,
    )
    assert list(best["name"]) == ["checkpoints/epoch=2", "checkpoints/epoch=1"]
    assert (
        mlhooks.search_models(filter_string=f"source_run_id = '{run_id}'", backend=store).shape[0]
        == 3
    )
    assert mlhooks.search_models(experiment="elsewhere", backend=store).empty
    runs = mlhooks.search_runs(backend=store)
    joined = runs.merge(frame, on="run_id", suffixes=("", "_model"))
    assert sorted(joined["name"]) == sorted(rows)


def test_a_backend_without_models_says_so(mlhooks_memory: RecordedRuns) -> None:
    from mlhooks.backends import Backend

    class Counter(Backend):
        name = "counter"

        def start_run(self, run: object) -> None: ...

        def log_batch(self, batch: object) -> None: ...

        def end_run(self, op: object) -> None: ...

    with pytest.raises(ValueError, match="backend 'counter' cannot load model"):
        mlhooks.load_model("any", backend=Counter())


def test_the_step_of_a_model_is_its_checkpoints(tmp_path: Path) -> None:
    assert checkpoint(tmp_path, 3, 0.1).step == 30
    assert ModelArtifact("m", "xgboost", metadata={"iteration": 4}).step == 4
    assert ModelArtifact("m", "sklearn", metadata={"step": True}).step is None
    assert ModelArtifact("m", "sklearn").step is None


def save_pretrained(folder: Path) -> None:
    """What a framework's slow save writes: a folder of files (one of them named as
    the local store's own model metadata)."""
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "weights").mkdir()
    (folder / "weights" / "model.json").write_text("the framework's, not the store's")


def test_a_model_saved_as_a_folder_in_the_background_loads_back_as_that_folder(
    store: object,
) -> None:
    """``FitSession.model_in_background``: the folder the task writes, in the staging
    area, is the model, stored by its path (and gone from the staging area once stored)."""
    with mlhooks.start_run("pretrained", backends=[store], experiment="folders") as run:
        mlhooks.log_param("layers", 2)
        session = FitSession("demo", "fit", settings=FrameworkOptions())
        session.start()
        session.model_in_background(Scaler(1.0), save_pretrained, flavor="folders", task="demo")
        session.end()
    loaded = mlhooks.load_model(run.info.run_id, backend=store)
    assert isinstance(loaded, Path) and loaded.is_dir()
    assert (loaded / "config.json").read_text() == '{"layers": 2}'
    assert (loaded / "weights" / "model.json").read_text() == "the framework's, not the store's"
    (row,) = mlhooks.search_models(experiment="folders", backend=store).to_dict("records")
    assert (row["name"], row["flavor"], row["params.layers"]) == ("model", "folders", "2")
    assert row["tags.mlhooks.task"] == "demo"
    assert row["tags.mlhooks.class"] == f"{__name__}.Scaler"
    assert not list(staging_root().glob("*/*"))


def test_a_model_whose_background_save_fails_or_writes_nothing_is_not_stored(
    mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"half")
        raise RuntimeError("boom in save_pretrained")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mlhooks.start_run("unsaved"):
            session = FitSession("demo", "fit", settings=FrameworkOptions())
            session.start()
            session.model_in_background(Scaler(1.0), broken, name="broken")
            session.model_in_background(Scaler(1.0), lambda folder: None, name="empty")
            session.end()
    run = mlhooks_memory.only_run()
    assert run.models == [] and run.info.status is mlhooks.RunStatus.FINISHED
    assert [str(w.message) for w in caught if "boom in save_pretrained" in str(w.message)]
    assert not list(staging_root().glob("*/*"))  # neither left a folder behind


def test_models_in_the_background_follow_log_models(mlhooks_memory: RecordedRuns) -> None:
    ran: list[Path] = []
    with mlhooks.start_run("no-models"):
        session = FitSession("demo", "fit", settings=FrameworkOptions(log_models=False))
        session.start()
        session.model_in_background(Scaler(1.0), ran.append)
        session.end()
    assert ran == [] and mlhooks_memory.only_run().models == []
