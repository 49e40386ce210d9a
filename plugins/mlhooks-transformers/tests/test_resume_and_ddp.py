"""Resuming from a checkpoint continues the run; distributed training on two CPU
processes makes one run, logged by rank zero."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import mlhooks
from conftest import (
    artifacts,
    bert,
    history,
    logged,
    logged_model,
    model_files,
    only_run,
    trainer,
)
from mlhooks.testing import wait_for_services
from mlhooks_transformers import MlhooksCallback


def test_a_resumed_training_continues_the_same_run(client: Any) -> None:
    from transformers import TrainerCallback

    mlhooks.autolog(log_models=False)
    first = trainer(max_steps=10, save_strategy="steps", save_steps=10)
    first.train()
    saved = json.loads(Path("out/checkpoint-10/trainer_state.json").read_text())
    run_id = saved["stateful_callbacks"]["MlhooksCallback"]["attributes"]["run_id"]
    assert only_run(client).data.tags["mlhooks.run_id"] == run_id

    statuses: list[str] = []

    class Status(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 15:
                statuses.append(only_run(client).info.status)  # flushes first

    second = trainer(model=bert(seed=1), max_steps=20, callbacks=[Status()])
    second.train(resume_from_checkpoint="out/checkpoint-10")
    assert statuses == ["RUNNING"]  # the first run, running again

    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlhooks.transformers.resumed_at_step"] == "10"
    assert run.data.params["max_steps"] == "10"  # params stay those of the first training
    losses = history(client, run, "loss")
    assert losses == logged(first, "loss") + [p for p in logged(second, "loss") if p[0] > 10]
    assert [step for step, _ in losses] == [5, 10, 15, 20]


def test_resuming_a_checkpoint_made_without_mlhooks_saves_checkpoints_as_usual(
    client: Any,
) -> None:
    trainer(max_steps=10, save_strategy="steps", save_steps=10).train()  # not tracked
    mlhooks.autolog()
    resumed = trainer(max_steps=20, save_strategy="steps", save_steps=10)
    resumed.train(resume_from_checkpoint="out/checkpoint-10")  # a KeyError in a save, unless

    run = only_run(client)  # a run of its own: the checkpoint named none
    assert "mlhooks.transformers.resumed_at_step" not in run.data.tags
    assert [step for step, _ in history(client, run, "loss")] == [15, 20]
    assert artifacts(client, run, "checkpoints") == ["checkpoints/checkpoint-20"]


def test_a_trainer_restoring_callback_states_rebuilds_the_callback_with_its_options(
    client: Any,
) -> None:
    restore = {"restore_callback_states_from_checkpoint": True}
    callback = MlhooksCallback(log_every_n_steps=10, log_models=False)
    trainer(
        callbacks=[callback], max_steps=10, save_strategy="steps", save_steps=10, **restore
    ).train()
    resumed = trainer(
        callbacks=[MlhooksCallback()], max_steps=20, save_strategy="steps", save_steps=10, **restore
    )
    resumed.train(resume_from_checkpoint="out/checkpoint-10")

    (rebuilt,) = [c for c in resumed.callback_handler.callbacks if isinstance(c, MlhooksCallback)]
    assert rebuilt.options.log_every_n_steps == 10 and rebuilt.options.log_models is False
    run = only_run(client)
    assert [step for step, _ in history(client, run, "loss")] == [10, 20]
    assert artifacts(client, run, "checkpoints") == []  # log_models=False: no checkpoints


DDP_SCRIPT = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
import mlhooks
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

torch.set_num_threads(1)
mlhooks.autolog()
ids = torch.randint(5, 100, (32, 8), generator=torch.Generator().manual_seed(0))
data = [{"input_ids": x, "labels": int(x[0] >= 50)} for x in ids]
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
args = TrainingArguments(output_dir="out", max_steps=6, per_device_train_batch_size=4,
    logging_steps=2, save_strategy="steps", save_steps=3, report_to="none",
    disable_tqdm=True, use_cpu=True, ddp_backend="gloo", seed=0)
trainer = Trainer(model=model, args=args, train_dataset=data)
trainer.train()
# One write: torchrun starts the ranks unbuffered (python -u) on one stdout, where
# print's pieces (each argument, the separators, the newline) would interleave with
# the other rank's output.
sys.stdout.write(
    f"RANK {os.environ['RANK']} {trainer.state.is_world_process_zero} {trainer.args.world_size}\\n"
)
"""


@pytest.mark.slow
def test_distributed_training_on_two_cpu_processes_makes_one_run(
    client: Any, tmp_path: Path, tracking_uri: str
) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLHOOKS_STRICT": "1",
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    # Each rank's line is whole; the other rank's output may end just before it.
    assert sorted(re.findall(r"RANK \d+ \w+ \d+", done.stdout)) == [
        "RANK 0 True 2", "RANK 1 False 2"
    ]  # fmt: skip
    # What the ranks' writer services still store after the script exited, as a user
    # waits for it (a rank may hand over to a service that is not the script's own).
    assert wait_for_services(tmp_path / "runs", 600)

    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run, "loss")] == [2, 4, 6]  # once each
    assert artifacts(client, run, "checkpoints") == [
        "checkpoints/checkpoint-3", "checkpoints/checkpoint-6"
    ]  # fmt: skip
    assert (model_files(logged_model(client, run), tmp_path) / "model.safetensors").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
