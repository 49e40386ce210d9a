"""A Hugging Face Trainer under faults (issue 18): a backend that fails while the Trainer
trains, and a process killed mid-training. The training always completes as it would
without mlhooks (or dies only of its own kill), the user hears of the fault (each
warning once, no traceback), and what was logged lands later, each point once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import Store, finish_dead_journals
from conftest import mlhooks_cli as cli
from mlhooks.testing import run_script
from mlhooks_mlflow.testing import MlflowServer

SETTLE = 1.5
"""Seconds a script waits before its death: three journal intervals (0.5 s)."""

TRAINING = """
import json, os, signal, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
import mlhooks
from transformers import (BertConfig, BertForSequenceClassification, Trainer, TrainerCallback,
                          TrainingArguments)

torch.set_num_threads(1)
mlhooks.autolog()
ids = torch.randint(5, 100, (32, 8), generator=torch.Generator().manual_seed(0))
data = [{"input_ids": x, "labels": int(x[0] >= 50)} for x in ids]
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))


class Die(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ.get("SETTLE_AT", -1)):
            time.sleep(SETTLE_SECONDS)  # what was logged is older than the journal interval
        if state.global_step == int(os.environ.get("KILL_AT", -1)):
            os.kill(os.getpid(), signal.SIGKILL)


args = TrainingArguments(output_dir="out", max_steps=20, per_device_train_batch_size=8,
    logging_steps=5, save_strategy="steps", save_steps=10, report_to="none",
    disable_tqdm=True, use_cpu=True, seed=0)
trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Die()])
trainer.train()
logged = [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e]
print("TRAINED " + json.dumps({"steps": trainer.state.global_step, "loss": logged}))
""".replace("SETTLE_SECONDS", str(SETTLE))

AS_USERS_RUN_IT = {
    "MLHOOKS_STRICT": "0",  # our errors are warnings, never exceptions
    "MLHOOKS_RETRY_DELAYS": "0.05",
    "MLHOOKS_PROBE_INTERVAL": "0.2",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "OMP_NUM_THREADS": "1",
}


def mlhooks_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli(*args, root=Path(env["MLHOOKS_LOCAL_DIR"]), env=env, cwd=cwd, timeout=300)


def mlhooks_warnings(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "MlhooksWarning: " in line]
    return [line.split("MlhooksWarning: ", 1)[1] for line in lines]


def test_a_trainer_whose_mlflow_server_is_unreachable_trains_on_and_syncs_later(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """MLflow's server does not answer while a Trainer trains (checkpoints, the final
    model, 20 steps): the training completes (exit 0), the user is warned of the outage
    (and of what is spooled for `mlhooks sync`), each once, and of nothing else. Once
    the server is up, `mlhooks sync` stores the run: every logged step once, the
    checkpoints and the model, FINISHED."""
    server = new_mlflow_server()  # its port stays closed until start()
    local_dir = tmp_path / "mlhooks-runs"
    env = {
        **AS_USERS_RUN_IT,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(local_dir),
        "MLFLOW_TRACKING_URI": server.uri,
    }
    work = tmp_path / "work"
    work.mkdir()
    done = run_script(TRAINING, env=env, cwd=work)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    trained = json.loads(done.stdout.split("TRAINED ", 1)[1])
    assert trained["steps"] == 20
    told = mlhooks_warnings(done.stderr)
    assert any("unreachable since" in message for message in told), told
    # Each warning once, each about the outage: the server that does not answer, and
    # (the core's second notice) what is left for `mlhooks sync` when the process exits.
    assert len(told) == len(set(told)) and all("spool" in message for message in told), told

    server.start()
    synced = mlhooks_cli("sync", "--dir", str(local_dir), env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    losses = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert [[step, value] for step, value in losses] == trained["loss"]
    stored = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "model", "training_args.json"} <= stored


def test_a_trainer_killed_mid_training_loses_at_most_the_last_interval(store: Store) -> None:
    """The Trainer's process is SIGKILLed at step 16, 1.5 s after step 12: after
    ``mlhooks sync`` the run holds the params and the loss of steps 5 and 10, once each
    (15 too, if it was journaled in time), and ended KILLED."""
    work = store.root.parent / "work"
    work.mkdir()
    done = store.script(TRAINING, cwd=str(work), SETTLE_AT="12", KILL_AT="16", **AS_USERS_RUN_IT)
    assert done.returncode == -9, done.stderr[-4000:]
    finish_dead_journals(store.root, store.env)

    (run,) = store.all_runs()
    assert run.status == "KILLED"
    assert run.params["max_steps"] == "20" and run.params["hidden_size"] == "16"
    steps = [step for step, _ in run.metrics["loss"]]
    assert steps[:2] == [5, 10] and steps in ([5, 10], [5, 10, 15]), steps
