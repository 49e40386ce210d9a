"""Fixtures: a real sqlite MLflow store per test; tiny models built from configs (a
2-layer BERT classifier, a 2-layer GPT-2), datasets of token ids and a word-level
tokenizer made here. Nothing is downloaded."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: nothing is fetched
os.environ.setdefault("MLHOOKS_STRICT", "1")

from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks_mlflow.testing import stored_models

torch.set_num_threads(1)

VOCAB = 100
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]


@pytest.fixture(autouse=True)
def tracking_uri(mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``,
    which also makes the test's folder the current one: the Trainer's ``out/`` goes
    there); ``mlhooks_clean`` turns autologging off after it."""
    return mlflow_tracking_uri


@pytest.fixture
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def all_runs(client: MlflowClient) -> list[Any]:
    assert mlhooks.flush(120)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def only_run(client: MlflowClient) -> Any:
    runs = all_runs(client)
    assert len(runs) == 1, f"{len(runs)} MLflow runs: {[r.info.run_name for r in runs]}"
    return runs[0]


def history(client: MlflowClient, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def artifacts(client: MlflowClient, run: Any, path: str | None = None) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run.info.run_id, path))


def models(client: MlflowClient, run: Any) -> dict[str, str]:
    """The models stored with ``run``: name -> a URI that loads it (``models:/<id>`` for
    an MLflow 3 logged model)."""
    return stored_models(client, run.info.run_id)


def logged_model(client: MlflowClient, run: Any, name: str = "model") -> Any:
    """The READY logged model ``name`` of ``run``: the only one of that name."""
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    named = [m for m in found if m.tags.get("mlhooks.model_name") == name]
    assert len(named) == 1, [(m.name, m.status) for m in found]
    assert str(named[0].status) == "READY", named[0].status
    return named[0]


def model_files(model: Any, tmp_path: Path) -> Path:
    """A downloaded copy of a logged model's files."""
    import mlflow

    target = tmp_path / f"model-{model.model_id}"
    target.mkdir()
    location = model.artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(target)))


def logged(trainer: Any, key: str) -> list[tuple[int, float]]:
    """What the Trainer logged of ``key``, as (step, value), from its own log history."""
    return [(entry["step"], entry[key]) for entry in trainer.state.log_history if key in entry]


class TokenIds(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random token ids (not special tokens), labelled by the first token's half of the
    vocabulary: ``labels`` a class for classifiers, or the ids for language models."""

    def __init__(self, n: int = 32, length: int = 8, seed: int = 0, lm: bool = False) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, VOCAB, (n, length), generator=generator)
        self.labels = self.ids if lm else (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def bert(seed: int = 0, **config: Any) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(
        BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=32, **config)
    )  # fmt: skip


def gpt2(seed: int = 0) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    )


def tokenizer() -> Any:
    """A word-level tokenizer of :data:`WORDS` ("w7 w12" -> its ids), built here."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def arguments(**overrides: Any) -> Any:
    """Small, quiet CPU training arguments; ``out/`` under the current (test's) folder."""
    from transformers import TrainingArguments

    values: dict[str, Any] = dict(
        output_dir=str(Path.cwd() / "out"), max_steps=20, per_device_train_batch_size=8,
        logging_steps=5, save_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    values.update(overrides)
    return TrainingArguments(**values)


def trainer(model: Any = None, callbacks: Any = None, processing_class: Any = None,
            eval: bool = False, lm: bool = False, **overrides: Any) -> Any:  # fmt: skip
    from transformers import Trainer

    if eval:
        overrides.setdefault("eval_strategy", "steps")
        overrides.setdefault("eval_steps", 10)
    return Trainer(
        model=model if model is not None else (gpt2() if lm else bert()),
        args=arguments(**overrides),
        train_dataset=TokenIds(lm=lm),
        eval_dataset=TokenIds(16, seed=1, lm=lm) if eval else None,
        processing_class=processing_class,
        callbacks=callbacks,
    )


def weights(model: Any) -> list[float]:
    return [
        round(v, 6) for v in torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    ]
