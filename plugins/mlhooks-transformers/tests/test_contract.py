"""The core's shared safety and import/patch/unpatch ordering tests, on a real Trainer."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import trainer, weights
from mlhooks.testing.contract import IntegrationContract
from mlhooks_transformers import tracker

FIT_CODE = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
torch.set_num_threads(1)
ids = torch.randint(5, 100, (16, 8), generator=torch.Generator().manual_seed(0))
data = [{"input_ids": x, "labels": int(x[0] >= 50)} for x in ids]
model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
args = TrainingArguments(output_dir="out", max_steps=4, per_device_train_batch_size=8,
    logging_steps=2, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True)
Trainer(model=model, args=args, train_dataset=data).train()
"""


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The import-order scripts load only this plugin: importing MLflow there would
    add seconds for nothing (they write to the memory backend)."""
    monkeypatch.setenv("MLHOOKS_PLUGINS", "transformers")


class Raising:
    """A user's callback that raises ``error`` at the second step."""

    def __new__(cls, error: BaseException) -> Any:
        from transformers import TrainerCallback

        class RaiseAtStep2(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == 2:
                    raise error

        return RaiseAtStep2()


class TestTransformersContract(IntegrationContract):
    framework = "transformers"
    modules = ("transformers.trainer",)
    targets = ("transformers.trainer:Trainer.train",)
    fit_code = FIT_CODE
    emits_epochs = True  # each epoch of the Trainer

    def fit(self) -> list[float]:
        tracked = trainer(max_steps=4, logging_steps=2)
        tracked.train()
        return weights(tracked.model)

    def fit_raising(self, error: BaseException) -> None:
        trainer(max_steps=4, callbacks=[Raising(error)]).train()

    def fit_epochs(self) -> int:
        # 32 examples in batches of 8: 4 steps an epoch
        trainer(max_steps=-1, num_train_epochs=3).train()
        return 3

    def break_integration(self, monkeypatch: Any) -> None:
        def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("contract boom")

        monkeypatch.setattr(tracker.Tracker, "log", boom)
