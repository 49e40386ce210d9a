"""Models back from the stores without MLflow: ``mlhooks.load_model`` and
``mlhooks.search_models`` on the local and in-memory stores."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlhooks
from mlhooks.backends.local import LocalBackend
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
