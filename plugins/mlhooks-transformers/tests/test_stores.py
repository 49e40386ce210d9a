"""What lands in the other stores: the in-memory backend and the local file store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import mlhooks
from conftest import TokenIds, logged, tokenizer, trainer
from mlhooks.testing import RecordedRuns


def same_predictions(folder: Path, trained: Any) -> None:
    """The model in ``folder`` loads with ``from_pretrained`` and predicts as ``trained``."""
    loaded = type(trained).from_pretrained(folder, local_files_only=True).eval()
    ids = TokenIds(2).ids
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, trained.eval()(ids).logits, atol=1e-6)


def test_the_memory_backend(mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog()
    tracked = trainer(eval=True, processing_class=tokenizer(), save_strategy="steps", save_steps=10)
    tracked.train()

    run = mlhooks_memory.only_run()
    assert run.info.status is mlhooks.RunStatus.FINISHED
    assert run.tags["mlhooks.framework"] == "transformers"
    assert [(p.step, p.value) for p in run.history("loss")] == logged(tracked, "loss")
    assert [(p.step, p.value) for p in run.history("eval_loss")] == logged(tracked, "eval_loss")
    assert {d.name: d.context for d in run.datasets} == {"train": "train", "eval": "eval"}
    (train,) = [d for d in run.datasets if d.name == "train"]
    assert train.shape == (32,) and train.schema == {"input_ids": "int64[8]", "labels": "int64[]"}
    names = set(run.artifacts)
    assert {"training_args.json", "model_config.json"} <= names
    assert "checkpoints/checkpoint-10/model.safetensors" in names
    assert "checkpoints/checkpoint-20/trainer_state.json" in names
    (model,) = run.models  # the save_pretrained folder, with the tokenizer's files
    assert (model.name, model.flavor, model.format) == ("model", "transformers", "directory")
    assert model.metadata["task"] == "text-classification"
    assert model.metadata["class"].endswith(".BertForSequenceClassification")
    folder = mlhooks.load_model(run.info.run_id, backend=mlhooks_memory.backend)
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    same_predictions(folder, tracked.model)
    assert not list(Path("mlhooks-runs").glob(".staging/*/model"))  # gone once stored


def test_the_local_store(mlhooks_clean: None, tmp_path: Path) -> None:
    root = tmp_path / "local-store"
    mlhooks.autolog(backends=[mlhooks.backend("local", root=str(root))])
    tracked = trainer(lm=True)
    tracked.train()
    assert mlhooks.flush(120)

    store = mlhooks.LocalStore(root)
    (run_id,) = store.run_ids()
    run = store.get_run(run_id)
    assert run.params["n_layer"] == "2" and run.params["max_steps"] == "20"
    assert [(p.step, p.value) for p in run.history("loss")] == logged(tracked, "loss")
    (model,) = run.models
    assert (model.name, model.flavor, model.format) == ("model", "transformers", "directory")
    assert model.metadata["task"] == "text-generation"  # told by its class
    folder = mlhooks.load_model(run_id, backend=mlhooks.backend("local", root=str(root)))
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    same_predictions(folder, tracked.model)
    rows = mlhooks.search_models(backend=mlhooks.backend("local", root=str(root)))
    assert list(rows["flavor"]) == ["transformers"] and list(rows["params.n_layer"]) == ["2"]
