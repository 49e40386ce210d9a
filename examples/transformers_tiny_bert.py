"""A Hugging Face ``Trainer`` tracked by ``mlhooks.autolog()`` alone: a tiny BERT (built
from a config: nothing is downloaded) learns whether a sentence of a made-up language
has more "high" words than "low" ones, with a word-level tokenizer built here. Then
everything is read back from MLflow, and the logged model classifies a sentence.

    pip install -e plugins/mlhooks-mlflow -e plugins/mlhooks-transformers
    pip install transformers accelerate torch
    python examples/transformers_tiny_bert.py
    mlflow ui --backend-store-uri sqlite:///mlflow.db     # then http://127.0.0.1:5000

Runs go where MLflow would write (``MLFLOW_TRACKING_URI``, else ``./mlflow.db``). The
Trainer's checkpoints go to ``./tiny-bert``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is made locally

import mlflow
import torch
from mlflow.tracking import MlflowClient
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

import mlhooks

mlhooks.autolog()  # the Trainer, from here on

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
vocabulary = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
vocabulary.pre_tokenizer = pre_tokenizers.Whitespace()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=vocabulary, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
    sep_token="[SEP]", mask_token="[MASK]",
)  # fmt: skip


def sentences(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Token ids of n sentences of 8 words; label 1 when most words are w50..w94."""
    ids = torch.randint(5, 100, (n, 8), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": row, "labels": torch.tensor(int((row >= 55).sum() > 4))} for row in ids]


torch.manual_seed(0)
model = BertForSequenceClassification(
    BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=16)
)  # fmt: skip
# report_to="mlflow" is Hugging Face's own MLflow logger: left out while mlhooks tracks.
args = TrainingArguments(
    output_dir="tiny-bert", run_name="tiny-bert", max_steps=120, learning_rate=3e-3,
    per_device_train_batch_size=16, logging_steps=10, eval_strategy="steps", eval_steps=40,
    save_strategy="steps", save_steps=40, save_total_limit=2, load_best_model_at_end=True,
    metric_for_best_model="eval_loss", report_to="mlflow", disable_tqdm=True, use_cpu=True,
)  # fmt: skip
trainer = Trainer(
    model=model, args=args, train_dataset=sentences(512, seed=0),
    eval_dataset=sentences(128, seed=1), processing_class=tokenizer,
)  # fmt: skip
trainer.train()

assert mlhooks.flush(300)  # stored in the background; wait before reading back
client = MlflowClient()
(run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
print(f"{run.info.run_name} {run.info.run_id} {run.info.status}")
print("params:", {k: run.data.params[k] for k in ("learning_rate", "max_steps", "hidden_size")})
losses = client.get_metric_history(run.info.run_id, "loss")
evaluations = client.get_metric_history(run.info.run_id, "eval_loss")
print(f"loss at steps {[m.step for m in losses]}")
print(f"eval_loss at steps {[m.step for m in evaluations]}")
print("checkpoints:", [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")])
print("best checkpoint:", run.data.tags["mlhooks.transformers.best_checkpoint"])
classify = mlflow.transformers.load_model(f"runs:/{run.info.run_id}/model")
high, low = "w90 w80 w70 w60 w61 w99 w5 w6", "w5 w6 w7 w8 w9 w10 w90 w91"
print("high sentence:", classify(high)[0]["label"], "low sentence:", classify(low)[0]["label"])
