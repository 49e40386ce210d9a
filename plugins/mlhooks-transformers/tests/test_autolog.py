"""autolog() and Trainer.train on a real sqlite MLflow store: what a training logs, Hugging
Face's MLflow callback left out and put back, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

import mlhooks
from conftest import (
    TokenIds,
    all_runs,
    artifacts,
    bert,
    history,
    logged,
    logged_model,
    model_files,
    models,
    only_run,
    tokenizer,
    trainer,
)


def test_a_training_logs_its_arguments_config_steps_evaluations_checkpoints_and_model(
    client: Any,
) -> None:
    mlhooks.autolog()
    tracked = trainer(eval=True, processing_class=tokenizer(), save_strategy="steps", save_steps=10)
    tracked.train()

    run = only_run(client)
    assert run.info.run_name == "BertForSequenceClassification"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["learning_rate"] == "5e-05" and params["max_steps"] == "20"
    assert params["per_device_train_batch_size"] == "8" and params["logging_steps"] == "5"
    assert params["hidden_size"] == "32" and params["vocab_size"] == "100"  # the config
    assert params["model_type"] == "bert"
    total = sum(p.numel() for p in tracked.model.parameters())
    assert params["num_parameters"] == params["num_trainable_parameters"] == str(total)
    # every logged step: loss, learning rate and grad norm, as the Trainer logged them
    for key in ("loss", "learning_rate", "grad_norm"):
        assert history(client, run, key) == logged(tracked, key), key
        assert [step for step, _ in history(client, run, key)] == [5, 10, 15, 20]
    for key in ("eval_loss", "eval_runtime"):  # every evaluation at its step
        assert history(client, run, key) == logged(tracked, key), key
        assert [step for step, _ in history(client, run, key)] == [10, 20]
    assert history(client, run, "train_loss") == logged(tracked, "train_loss")
    assert [step for step, _ in history(client, run, "epoch")] == [5, 10, 10, 15, 20, 20, 20]

    names = artifacts(client, run)
    assert {"checkpoints", "training_args.json", "model_config.json"} <= set(names)
    assert "model" in models(client, run) and "model" not in names  # a logged model
    assert artifacts(client, run, "checkpoints") == [
        "checkpoints/checkpoint-10", "checkpoints/checkpoint-20"
    ]  # fmt: skip
    assert "checkpoints/checkpoint-10/trainer_state.json" in artifacts(
        client, run, "checkpoints/checkpoint-10"
    )
    arguments = json.loads(
        Path(client.download_artifacts(run.info.run_id, "training_args.json")).read_text()
    )
    assert arguments["max_steps"] == 20 and arguments["report_to"] == []
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "eval"}
    assert json.loads(inputs["train"].profile)["num_rows"] == 32  # the dataset's length


def test_the_model_with_a_tokenizer_is_an_mlflow_transformers_model(
    client: Any, tmp_path: Path
) -> None:
    mlhooks.autolog()
    tracked = trainer(processing_class=tokenizer())
    tracked.train()

    run = only_run(client)
    model = logged_model(client, run)
    assert model.tags["mlhooks.flavor"] == "transformers"
    assert model.tags["mlhooks.task"] == "text-classification"
    assert "MLmodel" in {p.name for p in model_files(model, tmp_path).iterdir()}
    pipeline = mlflow.transformers.load_model(f"runs:/{run.info.run_id}/model")
    assert pipeline.task == "text-classification"
    text = "w7 w50 w3 w12"
    with torch.no_grad():
        encoded = tokenizer()(text, return_tensors="pt")
        expected = torch.softmax(tracked.model.eval()(**encoded).logits, dim=-1)[0]
    predicted = pipeline(text)[0]
    label = int(predicted["label"].split("_")[1])
    assert predicted["score"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert label == int(expected.argmax())
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict([text])
    assert served["score"][0] == pytest.approx(predicted["score"], abs=1e-5)


def test_a_model_without_a_tokenizer_is_its_save_pretrained_folder(
    client: Any, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    mlhooks.autolog()
    tracked = trainer(lm=True)  # no processing_class: MLflow's flavor cannot build a pipeline
    tracked.train()

    run = only_run(client)
    assert run.info.run_name == "GPT2LMHeadModel"
    folder = model_files(logged_model(client, run), tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    assert "MLmodel" not in {p.name for p in folder.iterdir()}  # no tokenizer: no pipeline
    ids = TokenIds(2, lm=True).ids
    for copy in (folder, mlhooks.load_model(run.info.run_id)):  # a downloaded copy's path
        loaded = AutoModelForCausalLM.from_pretrained(copy, local_files_only=True)
        with torch.no_grad():
            assert torch.allclose(loaded(ids).logits, tracked.model.eval()(ids).logits, atol=1e-6)


def test_a_model_mlflow_cannot_save_is_its_folder_with_a_notice(
    client: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    mlhooks.autolog(transformers={"task": "no-such-task"})
    trainer(processing_class=tokenizer(), max_steps=5).train()

    run = only_run(client)
    stored = {p.name for p in model_files(logged_model(client, run), tmp_path).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= stored
    assert "MLmodel" not in stored  # nothing of MLflow's failed attempt is left
    notices = [r.getMessage() for r in caplog.records if r.name == "mlhooks"]
    assert any("flavor could not save it (MlflowException" in message for message in notices)


def test_a_model_that_is_not_a_transformers_model_is_a_pytorch_model(client: Any) -> None:
    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.EmbeddingBag(100, 4)
            self.out = torch.nn.Linear(4, 2)

        def forward(self, input_ids: Any, labels: Any = None) -> dict[str, Any]:
            logits = self.out(self.embed(input_ids))
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    mlhooks.autolog()
    tracked = trainer(model=Classifier())
    tracked.train()
    run = only_run(client)
    assert run.info.run_name == "Classifier"
    assert history(client, run, "loss") == logged(tracked, "loss")
    loaded = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    ids = TokenIds(2).ids
    assert torch.equal(loaded.embed(ids), tracked.model.embed(ids))


def test_hf_mlflow_callback_is_left_out_while_tracked_and_other_loggers_untouched(
    client: Any,
) -> None:
    from transformers import TrainerCallback
    from transformers.integrations import MLflowCallback, TensorBoardCallback

    seen: list[list[str]] = []

    class Watch(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 1:
                seen.append([type(c).__name__ for c in tracked.callback_handler.callbacks])

    mlhooks.autolog()
    tracked = trainer(report_to=["mlflow", "tensorboard"], callbacks=[Watch()])
    before = list(tracked.callback_handler.callbacks)
    assert any(type(c) is MLflowCallback for c in before)
    tracked.train()

    assert "MLflowCallback" not in seen[0] and "MlhooksCallback" in seen[0]
    assert "TensorBoardCallback" in seen[0]  # another logger: left alone
    after = tracked.callback_handler.callbacks
    assert len(after) == len(before) and all(a is b for a, b in zip(after, before, strict=True))
    assert list(Path("out").rglob("events.out.tfevents.*")), "TensorBoard logged nothing"
    assert any(type(c) is TensorBoardCallback for c in after)
    run = only_run(client)  # Hugging Face's callback would have made a second MLflow run
    assert [step for step, _ in history(client, run, "loss")] == [5, 10, 15, 20]

    mlhooks.autolog(disable=True)
    tracked.train()  # untracked: Hugging Face's callback logs, as it did without mlhooks
    assert len(all_runs(client)) == 2


def test_run_name_log_every_n_steps_and_no_models(client: Any) -> None:
    mlhooks.autolog(log_every_n_steps=10, transformers={"log_models": False})
    trainer(eval=True, run_name="tiny-bert", save_strategy="steps", save_steps=10).train()

    run = only_run(client)
    assert run.info.run_name == "tiny-bert"
    assert [step for step, _ in history(client, run, "loss")] == [10, 20]  # logged every 5
    assert [step for step, _ in history(client, run, "eval_loss")] == [10, 20]  # all kept
    assert "model" not in artifacts(client, run) and "checkpoints" not in artifacts(client, run)
    assert models(client, run) == {}


def test_checkpoints_can_be_left_out_and_the_best_one_is_tagged(client: Any) -> None:
    mlhooks.autolog(transformers={"log_checkpoints": False})
    trainer(
        eval=True, save_strategy="steps", save_steps=10, load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    ).train()  # fmt: skip

    run = only_run(client)
    assert "checkpoints" not in artifacts(client, run) and "model" in models(client, run)
    best = min(history(client, run, "eval_loss"), key=lambda point: point[1])
    assert (
        run.data.tags["mlhooks.transformers.best_checkpoint"] == f"checkpoints/checkpoint-{best[0]}"
    )
    assert float(run.data.tags["mlhooks.transformers.best_metric"]) == pytest.approx(best[1])


def test_long_config_values_are_left_to_the_json_file(client: Any) -> None:
    mlhooks.autolog(log_models=False)
    trainer(model=bert(num_labels=300), max_steps=2).train()  # id2label: 300 entries
    run = only_run(client)
    assert "id2label" not in run.data.params and run.data.params["hidden_size"] == "32"
    config = json.loads(
        Path(client.download_artifacts(run.info.run_id, "model_config.json")).read_text()
    )
    assert len(config["id2label"]) == 300


def test_unknown_options_fail_when_autolog_is_called() -> None:
    with pytest.raises(TypeError, match="log_checkpoint"):
        mlhooks.autolog(transformers={"log_checkpoint": False})
    with pytest.raises(TypeError, match="'task' must be"):
        mlhooks.autolog(transformers={"task": 3})


def test_gpt2_trains_under_autolog_with_its_own_task(client: Any) -> None:
    mlhooks.autolog(transformers={"task": "text-generation"})
    tracked = trainer(lm=True, processing_class=tokenizer(), max_steps=5)
    tracked.train()
    run = only_run(client)
    pipeline = mlflow.transformers.load_model(f"runs:/{run.info.run_id}/model")
    assert pipeline.task == "text-generation"
    assert history(client, run, "loss") == logged(tracked, "loss")
