"""What lands in the other stores: the in-memory backend and the local file store."""

from __future__ import annotations

from pathlib import Path

import mlhooks
from conftest import logged, tokenizer, trainer
from mlhooks.testing import RecordedRuns


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
    assert {"training_args.json", "model_config.json", "model/MLmodel"} <= names
    assert "checkpoints/checkpoint-10/model.safetensors" in names
    assert "checkpoints/checkpoint-20/trainer_state.json" in names


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
    assert store.artifact_path(run_id, "model/model.safetensors").is_file()
    assert store.artifact_path(run_id, "model/config.json").is_file()
