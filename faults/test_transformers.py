"""A Hugging Face Trainer under faults (issue 18): a backend that fails while the Trainer
trains, and a process killed mid-training. The training always completes as it would
without mlhooks (or dies only of its own kill), the user hears of the fault (each
warning once, no traceback), and what was logged lands later, each point once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from conftest import SERVICE, Store, finish_dead_journals, services_alive, wait_for_services
from conftest import mlhooks_cli as cli
from mlhooks.testing import run_script
from mlhooks_mlflow.testing import MlflowServer, stored_models

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
    assert {"checkpoints", "training_args.json"} <= stored
    assert "model" in stored_models(client, run.info.run_id)  # a logged model of the run


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


# -- the final model, saved in the background and stored as a logged model ----------------

WITH_A_TOKENIZER = """
import json, os, signal, sys, threading, time
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
save_pretrained = model.save_pretrained


def dies_while_saving(*args, **kwargs):
    # The final model's save on mlhooks' background worker: half of it written, then
    # the process is killed (after what was logged before had time to be journaled).
    if os.environ.get("KILL_IN_SAVE") and threading.current_thread().name == "mlhooks-tasks":
        save_pretrained(*args, **kwargs)
        time.sleep(SETTLE_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)
    return save_pretrained(*args, **kwargs)


model.save_pretrained = dies_while_saving
args = TrainingArguments(output_dir="out", max_steps=10, per_device_train_batch_size=8,
    logging_steps=5, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
    seed=0)
trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
trainer.train()
with torch.no_grad():
    logits = model.eval()(**tokenizer("TEXT", return_tensors="pt")).logits
logged = [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e]
print("TRAINED " + json.dumps({"loss": logged,
                               "probabilities": torch.softmax(logits, dim=-1)[0].tolist()}),
      flush=True)
mlhooks.flush(300)
print("FLUSHED", flush=True)
"""
TEXT = "w7 w50 w3 w12"
WITH_A_TOKENIZER = WITH_A_TOKENIZER.replace("SETTLE_SECONDS", str(SETTLE)).replace("TEXT", TEXT)


def pending_model(database: Path, process: subprocess.Popen[str], timeout: float = 300) -> str:
    """The id of the first logged model in the sqlite store ``database`` while it is
    being stored (PENDING: created, its files not yet in). The MLflow backend saves the
    transformers flavor between the two (loading the model, writing it): seconds."""
    from mlflow.entities import LoggedModelStatus

    pending = LoggedModelStatus.PENDING.to_int()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-4000:]
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                found = db.execute("SELECT model_id, status FROM logged_models").fetchall()
        except sqlite3.OperationalError:  # not created yet, or being written
            found = []
        if found:
            ((model_id, status),) = found
            assert status == pending, "the model was stored before it could be interrupted"
            return str(model_id)
        time.sleep(0.01)
    raise AssertionError(f"no logged model was begun within {timeout}s")


def start(script: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def the_model_landed_once(client: MlflowClient, pending: str, probabilities: list[float]) -> Any:
    """The run's one logged model is the one begun before the fault (``pending``),
    READY, carrying the run's params and final metrics, and predicts as trained."""
    import mlflow

    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [(m.model_id, str(m.status)) for m in found] == [(pending, "READY")]
    (model,) = found
    assert model.params == run.data.params
    assert {"loss", "train_loss"} <= {m.key for m in model.metrics}
    assert [o.model_id for o in run.outputs.model_outputs] == [pending]  # listed once
    pipeline = mlflow.transformers.load_model(f"models:/{model.model_id}")
    predicted = pipeline(TEXT)[0]
    assert abs(predicted["score"] - max(probabilities)) < 1e-5
    assert int(predicted["label"].split("_")[1]) == probabilities.index(max(probabilities))
    return run


def test_a_final_model_whose_server_dies_while_it_is_stored_is_finished_by_sync(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """MLflow's server is killed while the final model is being stored (its logged
    model created, its files not yet in): the training completes (exit 0) with the
    outage's warnings only, and once the server is back, `mlhooks sync` finishes that
    same logged model (READY, linked to the run's params and metrics, loadable), never
    a second one, and leaves no spool or staged folder behind."""
    server = new_mlflow_server()
    server.start()
    local_dir = tmp_path / "mlhooks-runs"
    env = {
        **AS_USERS_RUN_IT,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(local_dir),
        "MLFLOW_TRACKING_URI": server.uri,
        "MLHOOKS_EXIT_TIMEOUT": "10",
    }
    work = tmp_path / "work"
    work.mkdir()
    process = start(WITH_A_TOKENIZER, env, work)
    pending = pending_model(server.root / "server.db", process)
    server.kill()
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-4000:]
    assert "Traceback" not in err, err[-4000:]
    told = mlhooks_warnings(err)
    assert any("unreachable since" in message for message in told), told
    assert len(told) == len(set(told)) and all("spool" in message for message in told), told
    trained = json.loads(out.split("TRAINED ", 1)[1].splitlines()[0])

    server.start()
    synced = mlhooks_cli("sync", "--dir", str(local_dir), env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    client = MlflowClient(server.uri)
    with tracking_uri(server.uri):
        run = the_model_landed_once(client, pending, trained["probabilities"])
    assert run.info.status == "FINISHED"
    assert not list(local_dir.glob(".spool/**/*.jsonl")) and not list(local_dir.glob(".staging/*"))


def test_the_process_storing_a_final_model_killed_midway_leaves_it_stored_once(
    tmp_path: Path, new_mlflow_server: Callable[[], MlflowServer]
) -> None:
    """SIGKILL of the process saving the final model as a logged model (created, its
    files not yet in): the training process itself, or with the writer service, the
    service. The model is finished from the journal (by `mlhooks sync`, or by the
    service the training process starts again), that same logged model, once: READY,
    linked, loadable; no staged folder is left. Through a tracking server, whose
    logged models are stored by MLflow's calls, one after the other (a database store
    written from this machine takes a model in one transaction: nothing half-stored
    to interrupt there)."""
    server = new_mlflow_server()
    server.start()
    mlflow_tracking_uri = server.uri
    local_dir = tmp_path / "mlhooks-runs"
    env = {
        **AS_USERS_RUN_IT,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(local_dir),
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
    }
    work = tmp_path / "work"
    work.mkdir()
    process = start(WITH_A_TOKENIZER, env, work)
    pending = pending_model(server.root / "server.db", process)
    if SERVICE:
        (service,) = services_alive(local_dir)
        os.kill(service, signal.SIGKILL)
    else:
        process.kill()
    out, err = process.communicate(timeout=600)
    trained = json.loads(out.split("TRAINED ", 1)[1].splitlines()[0])
    if SERVICE:  # the training process started another service, which finished it
        assert process.returncode == 0, err[-4000:]
        assert "FLUSHED" in out
        wait_for_services(local_dir)
    else:
        assert process.returncode == -9, err[-4000:]
        synced = mlhooks_cli("sync", "--dir", str(local_dir), env=env, cwd=tmp_path)
        assert synced.returncode == 0, synced.stdout + synced.stderr

    client = MlflowClient(mlflow_tracking_uri)
    with tracking_uri(mlflow_tracking_uri):
        run = the_model_landed_once(client, pending, trained["probabilities"])
    # Its end was stored if it was journaled before the kill; recovery ends it otherwise.
    assert run.info.status in ("FINISHED", "KILLED")
    assert not list(local_dir.glob(".spool/**/*.jsonl")) and not list(local_dir.glob(".staging/*"))


def test_a_trainer_killed_while_saving_its_final_model_stores_no_half_model(store: Store) -> None:
    """The process is SIGKILLed in the middle of the final model's save_pretrained (on
    mlhooks' background worker, after training): the run holds every logged step and
    ends KILLED; no model is stored (neither half of one nor an empty one)."""
    work = store.root.parent / "work"
    work.mkdir()
    done = store.script(WITH_A_TOKENIZER, cwd=str(work), KILL_IN_SAVE="1", **AS_USERS_RUN_IT)
    assert done.returncode == -9, done.stderr[-4000:]
    trained = json.loads(done.stdout.split("TRAINED ", 1)[1].splitlines()[0])
    finish_dead_journals(store.root, store.env)

    (run,) = store.all_runs()
    assert run.status == "KILLED"
    assert [[step, value] for step, value in run.metrics["loss"]] == trained["loss"]
    if store.kind == "local":
        from mlhooks import LocalStore

        local = LocalStore(store.root)
        (run_id,) = local.run_ids()
        assert local.models(run_id) == []
    else:
        client = MlflowClient(store.env["MLFLOW_TRACKING_URI"])
        (stored,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert stored_models(client, stored.info.run_id) == {}
        assert client.search_logged_models([stored.info.experiment_id]) == []
    if not store.in_service:
        # The dead process's half-written folder goes with its journal's recovery. (With
        # the writer service, which finishes the journal itself, it stays: see the report.)
        assert not list(store.root.glob(".staging/*"))


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's tracking URI while the block runs (``models:/`` resolves through it)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: MLflow's default
