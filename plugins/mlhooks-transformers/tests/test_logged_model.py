"""The final model as an MLflow 3 logged model of its run, saved where the MLflow backend
runs: in this process, or in the writer service (``MLHOOKS_SERVICE=1``), which keeps
MLflow out of the training process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

import mlhooks
from conftest import logged_model, only_run, tokenizer, trainer

TEXT = "w7 w50 w3 w12"


def probabilities(model: Any, text: str) -> list[float]:
    """The trained model's class probabilities for ``text``."""
    with torch.no_grad():
        encoded = tokenizer()(text, return_tensors="pt")
        return torch.softmax(model.eval()(**encoded).logits, dim=-1)[0].tolist()


def predicts_as(pipeline: Any, expected: list[float]) -> None:
    """``pipeline`` (a text-classification pipeline) agrees with ``expected``."""
    predicted = pipeline(TEXT)[0]
    assert predicted["score"] == pytest.approx(max(expected), abs=1e-5)
    assert int(predicted["label"].split("_")[1]) == expected.index(max(expected))


def latest(points: list[Any]) -> dict[str, float]:
    """The latest value of each metric among ``points``."""
    found: dict[str, Any] = {}
    for point in points:
        known = found.get(point.key)
        if known is None or (point.step, point.timestamp) >= (known.step, known.timestamp):
            found[point.key] = point
    return {key: point.value for key, point in found.items()}


def test_the_final_model_is_a_logged_model_of_its_run_linked_to_its_params_and_metrics(
    client: Any,
) -> None:
    mlhooks.autolog(registered_model_name="tiny-bert")
    tracked = trainer(eval=True, processing_class=tokenizer())
    tracked.train()

    run = only_run(client)
    model = logged_model(client, run)
    assert model.name == "model" and model.source_run_id == run.info.run_id
    assert model.tags["mlhooks.run_id"] == run.data.tags["mlhooks.run_id"]
    assert model.tags["mlhooks.flavor"] == "transformers"
    assert model.tags["mlhooks.class"] == (
        "transformers.models.bert.modeling_bert.BertForSequenceClassification"
    )
    assert model.params == run.data.params  # every param of the run
    linked = latest(model.metrics)
    assert linked == run.data.metrics  # the run's final values, train_loss and eval_loss too
    assert {"loss", "eval_loss", "train_loss"} <= set(linked)
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    (version,) = client.search_model_versions("name='tiny-bert'")
    assert version.source == f"models:/{model.model_id}"
    assert version.run_id == run.info.run_id

    expected = probabilities(tracked.model, TEXT)
    predicts_as(mlflow.transformers.load_model(f"models:/{model.model_id}"), expected)
    predicts_as(mlhooks.load_model(run.data.tags["mlhooks.run_id"]), expected)
    served = mlflow.pyfunc.load_model(f"models:/{model.model_id}").predict([TEXT])
    assert served["score"][0] == pytest.approx(max(expected), abs=1e-5)
    assert not list(Path("mlhooks-runs").glob(".staging/*/model"))  # gone once stored


SERVICE_SCRIPT = """
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
import mlhooks
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast,
                          Trainer, TrainingArguments)

torch.set_num_threads(1)
mlhooks.autolog()
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
vocabulary = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
vocabulary.pre_tokenizer = pre_tokenizers.Whitespace()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=vocabulary, unk_token="[UNK]",
    pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
ids = torch.randint(5, 100, (32, 8), generator=torch.Generator().manual_seed(0))
data = [{"input_ids": x, "labels": int(x[0] >= 50)} for x in ids]
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
args = TrainingArguments(output_dir="out", max_steps=10, per_device_train_batch_size=8,
    logging_steps=5, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
    seed=0)
trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
trainer.train()
print("mlflow after training", "mlflow" in sys.modules)
assert mlhooks.flush(300)  # the service stored the model: the training process waited
print("mlflow after the model is stored", "mlflow" in sys.modules)
with torch.no_grad():
    logits = model.eval()(**tokenizer("TEXT", return_tensors="pt")).logits
print("PROBABILITIES " + json.dumps(torch.softmax(logits, dim=-1)[0].tolist()))
""".replace("TEXT", TEXT)


def test_with_the_writer_service_the_training_process_never_imports_mlflow(
    client: Any, tracking_uri: str, tmp_path: Path
) -> None:
    """``MLHOOKS_SERVICE=1``: a Trainer fit's final model is saved as an MLflow
    transformers model by the writer service, from the folder the training process
    wrote; MLflow is never imported there, and the logged model lands whole."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SERVICE_SCRIPT))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "script-runs"),
        "MLHOOKS_SERVICE": "1",
        "MLHOOKS_STRICT": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore::UserWarning:mlflow",
    }
    env.pop("MLHOOKS_BACKENDS", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "mlflow after training False" in done.stdout, done.stdout
    assert "mlflow after the model is stored False" in done.stdout, done.stdout
    expected = json.loads(done.stdout.split("PROBABILITIES ", 1)[1])

    run = only_run(client)
    assert run.info.status == "FINISHED"
    model = logged_model(client, run)
    assert model.tags["mlhooks.task"] == "text-classification"
    assert model.params == run.data.params
    assert latest(model.metrics) == run.data.metrics
    predicts_as(mlflow.transformers.load_model(f"models:/{model.model_id}"), expected)
    assert not (tmp_path / "script-runs").exists()  # journals, the model's folder: all gone
