"""The W&B backend, offline, read back from W&B's own run files and compared exactly."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import wandb
from sklearn.linear_model import Ridge

import mlhooks
from conftest import logged_points, points_of, stored_run
from mlhooks import LocalStore, RunInfo
from mlhooks.plugin import EndRun, LogBatch, LogModel, ModelArtifact
from mlhooks_wandb import STEP_METRIC, TAGS_KEY, WandbBackend, reading

START = 1_700_000_000_000  # explicit timestamps: every point is known exactly


def test_a_manual_run_lands_whole(wandb_dir: Path) -> None:
    with mlhooks.start_run(
        "manual",
        experiment="churn",
        description="the baseline",
        tags={"team": "vision"},
        backends=["wandb", "local"],
    ) as run:
        params = {"lr": 0.05, "layers": 4, "solver": "adam", "warm": True, "seed": None}
        mlhooks.log_params(params)
        mlhooks.log_params({"huge": 2**60, "grid": [1, 2]})
        mlhooks.set_tags({"stage": "dev", "long": "x" * 80})
        for step in range(50):
            mlhooks.log_metrics(
                {"loss": 1 / (step + 1), "acc": step / 50}, step=step, timestamp=START + step
            )
        mlhooks.log_metric("late", 3.5, step=7, timestamp=START + 100)
        mlhooks.log_metric("late", 2.5, step=3, timestamp=START + 101)  # out of order
    logged = LocalStore().get_run(run.run_id)  # the local store keeps what was logged

    stored = stored_run(wandb_dir, run.run_id)

    assert (stored.run_id, stored.name, stored.project) == (run.run_id, "manual", "churn")
    assert stored.notes == "the baseline" and stored.group == ""
    assert stored.exit_code == 0
    # Params: in the config, typed where the text is exactly the value's.
    config = {key: value for key, value in stored.config.items() if key != TAGS_KEY}
    assert config == {
        "lr": 0.05,
        "layers": 4,
        "solver": "adam",
        "warm": True,
        "seed": None,
        "huge": str(2**60),
        "grid": "[1, 2]",
    }
    assert {key: str(value) for key, value in config.items()} == logged.params
    # Tags: every one whole in the config, labels of at most 64 characters.
    assert stored.config[TAGS_KEY] == logged.tags
    assert set(stored.tags) == {"team=vision", "stage=dev", "long=" + "x" * 58 + "…"}
    # Metrics: every point at its step, several keys of a step in one row.
    assert points_of(stored) == logged_points(logged.metrics)
    rows = [row for row in stored.history if "loss" in row]
    assert all(set(row) >= {"loss", "acc"} for row in rows) and len(rows) == 50
    for row in rows:  # each row carries the logged timestamp
        assert round(row["_timestamp"] * 1000) == START + row[STEP_METRIC]
    assert sorted(stored.points("late")) == [(3, 2.5), (7, 3.5)]
    # The summary holds each key's value at its last step, not the last one logged.
    assert stored.summary["loss"] == 1 / 50 and stored.summary["late"] == 3.5
    # Every metric is plotted against the hidden step metric.
    assert {"name": STEP_METRIC, "glob_name": "", "step_metric": "", "hidden": True} in (
        stored.metric_definitions
    )
    assert {"name": "", "glob_name": "*", "step_metric": STEP_METRIC, "hidden": False} in (
        stored.metric_definitions
    )


def test_nan_and_infinities_are_kept(wandb_dir: Path) -> None:
    with mlhooks.start_run("odd", backends="wandb") as run:
        for step, value in enumerate([math.nan, math.inf, -math.inf, 1.0]):
            mlhooks.log_metric("x", value, step=step)
    values = [value for _, value in stored_run(wandb_dir, run.run_id).points("x")]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.0]


def test_batches_of_interleaved_runs_with_steps_out_of_order(wandb_dir: Path) -> None:
    """The backend's contract as the writer uses it: batches of two open runs in turn,
    steps out of order across and within batches, a key twice at one step."""
    backend = WandbBackend()
    first, second = RunInfo("a" * 32, "first"), RunInfo("b" * 32, "second")
    backend.start_run(first)
    backend.start_run(second)
    sent: dict[str, list[tuple[str, int, float]]] = {first.run_id: [], second.run_id: []}
    batches = [
        (first, [("loss", 0.5, 5, START), ("loss", 0.9, 1, START), ("acc", 0.1, 1, START)]),
        (second, [("loss", 0.3, 2, START), ("loss", 0.2, 9, START)]),
        (first, [("loss", 0.7, 3, START), ("acc", 0.6, 5, START), ("loss", 0.4, 5, START)]),
        (second, [("loss", 0.25, 4, START)]),
    ]
    for run, points in batches:
        backend.log_batch(LogBatch(run.run_id, list(points)))
        sent[run.run_id] += [(key, step, value) for key, value, step, _ in points]
    backend.end_run(EndRun(first.run_id, "FINISHED", START))
    backend.end_run(EndRun(second.run_id, "FAILED", START))

    for run in (first, second):
        stored = reading.load_run(wandb_dir, run.run_id, wait=60)
        assert points_of(stored) == sorted(sent[run.run_id])
    first_run = reading.load_run(wandb_dir, first.run_id)
    assert first_run.summary["loss"] == 0.4  # step 5, logged last at that step
    assert first_run.summary["acc"] == 0.6
    assert sorted(first_run.points("loss")) == [(1, 0.9), (3, 0.7), (5, 0.4), (5, 0.5)]
    assert reading.load_run(wandb_dir, second.run_id).summary["loss"] == 0.2
    assert [reading.load_run(wandb_dir, r.run_id).exit_code for r in (first, second)] == [0, 1]


def test_several_runs_open_at_once_on_several_threads(wandb_dir: Path) -> None:
    barrier = threading.Barrier(3)
    ids: dict[int, str] = {}

    def train(worker: int) -> None:
        with mlhooks.start_run(f"worker-{worker}", backends="wandb") as run:
            ids[worker] = run.run_id
            mlhooks.log_param("worker", worker)
            for step in range(300):
                mlhooks.log_metric("loss", worker + step / 1000, step=step)
                if step % 100 == 0:
                    barrier.wait(30)  # all three runs open and logging together

    threads = [threading.Thread(target=train, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for worker, run_id in ids.items():
        stored = stored_run(wandb_dir, run_id)
        assert stored.name == f"worker-{worker}" and stored.config == {"worker": worker}
        assert sorted(stored.points("loss")) == [(s, worker + s / 1000) for s in range(300)]
        assert stored.exit_code == 0
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("error", "status", "exit_code"),
    [(ZeroDivisionError, "FAILED", 1), (KeyboardInterrupt, "KILLED", 255)],
)
def test_how_a_run_ended_is_its_exit_code(
    wandb_dir: Path, error: type[BaseException], status: str, exit_code: int
) -> None:
    with pytest.raises(error):
        with mlhooks.start_run("ends", backends="wandb") as run:
            mlhooks.log_metric("loss", 1.0)
            raise error
    assert run.info.status == status
    assert stored_run(wandb_dir, run.run_id).exit_code == exit_code


def test_nested_runs_are_grouped_under_their_parent(wandb_dir: Path) -> None:
    with mlhooks.start_run("search", backends="wandb") as parent:
        with mlhooks.start_run("candidate", nested=True) as child:
            with mlhooks.start_run("fold", nested=True) as grandchild:
                mlhooks.log_metric("score", 0.5)
    group = f"search-{parent.run_id[:8]}"
    assert stored_run(wandb_dir, parent.run_id).group == ""
    assert stored_run(wandb_dir, child.run_id).group == group
    assert stored_run(wandb_dir, grandchild.run_id).group == group


def test_artifacts_are_files_of_the_run(wandb_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("accuracy 0.9")
    plots = tmp_path / "plots"
    (plots / "deep").mkdir(parents=True)
    (plots / "a.png").write_bytes(b"\x89PNG fake")
    (plots / "deep" / "b.csv").write_text("x,y\n1,2\n")
    clash = tmp_path / "config.yaml"  # a name W&B uses for a file of its own
    clash.write_text("mine: true\n")
    with mlhooks.start_run("files", backends="wandb") as run:
        mlhooks.log_artifact(report)
        mlhooks.log_artifacts(plots, artifact_path="eval/plots")
        mlhooks.log_artifact(clash)
    report.write_text("changed after logging")  # what was logged is a snapshot

    stored = stored_run(wandb_dir, run.run_id)
    expected = {
        "report.txt": "accuracy 0.9",
        "eval/plots/a.png": "\x89PNG fake",
        "eval/plots/deep/b.csv": "x,y\n1,2\n",
        "mlhooks-files/config.yaml": "mine: true\n",
    }
    assert set(stored.files) == set(expected)
    for name, content in expected.items():
        assert (stored.folder / "files" / name).read_bytes() == content.encode("latin-1")


def test_models_and_datasets_are_artifacts_of_their_type(wandb_dir: Path) -> None:
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = X @ np.array([0.5, -1.0])
    model = Ridge(alpha=0.1).fit(X, y)
    with mlhooks.start_run("models", backends=["wandb", "local"]) as run:
        mlhooks.log_dataset(X, name="features", context="train")
        mlhooks.log_model(model, flavor="sklearn", note="first")
    logged = LocalStore().get_run(run.run_id)

    stored = stored_run(wandb_dir, run.run_id)
    dataset = stored.artifact("dataset", "features")
    assert dataset.metadata == logged.datasets[0].to_dict()
    assert {"train", "latest"} <= set(dataset.aliases)
    assert set(dataset.files) == {"fingerprint.json"}
    model_artifact = stored.artifact("model", f"model-{run.run_id}")
    assert model_artifact.metadata["flavor"] == "sklearn"
    assert model_artifact.metadata["note"] == "first"
    assert model_artifact.metadata["mlhooks_run_id"] == run.run_id
    loaded = pickle.loads(Path(model_artifact.files["model.pkl"]).read_bytes())
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_a_model_in_a_file_keeps_its_name_and_bytes(wandb_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "epoch=2-step=12.ckpt"
    checkpoint.write_bytes(b"\x00\x01weights")
    backend = WandbBackend()
    run = RunInfo("c" * 32, "checkpoints")
    backend.start_run(run)
    artifact = ModelArtifact(
        "checkpoints/epoch=2-step=12", "lightning-checkpoint", path=str(checkpoint),
        format="file", metadata={"best": True, "score": 0.25},
    )  # fmt: skip
    backend.log_model(LogModel(run.run_id, artifact))
    backend.end_run(EndRun(run.run_id, "FINISHED", START))
    checkpoint.write_bytes(b"overwritten by the next epoch")

    stored = reading.load_run(wandb_dir, run.run_id, wait=60)
    found = stored.artifact("model", f"checkpoints_epoch_2-step_12-{run.run_id}")
    assert found.metadata["best"] is True and found.metadata["score"] == 0.25
    assert Path(found.files["epoch=2-step=12.ckpt"]).read_bytes() == b"\x00\x01weights"


def test_the_run_context_is_a_file_of_the_run(
    wandb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_CONTEXT", "platform,versions")
    with mlhooks.start_run("context", backends="wandb") as run:
        pass
    stored = stored_run(wandb_dir, run.run_id)
    assert "mlhooks/context.json" in stored.files
    assert stored.config[TAGS_KEY]["mlhooks.context.python"]  # a context tag, whole
    assert not any(label.startswith("mlhooks.context.") for label in stored.tags)


def test_the_users_own_wandb_run_is_left_alone(wandb_dir: Path) -> None:
    theirs = wandb.init(project="theirs", dir=str(wandb_dir), reinit="create_new")
    try:
        with mlhooks.start_run("ours", backends="wandb") as run:
            mlhooks.log_metric("loss", 0.5)
            theirs.log({"their_metric": 1.0})
        assert wandb.run is None  # mlhooks' runs never become W&B's global run
        theirs.log({"their_metric": 2.0})
    finally:
        theirs.finish()
    ours = stored_run(wandb_dir, run.run_id)
    assert ours.metric_keys() == {"loss"}
    (folder,) = reading.run_dirs(wandb_dir, theirs.id)
    assert reading.wait_until_finished(folder, 60)
    mine = reading.load(folder)
    assert [row["their_metric"] for row in mine.history] == [1.0, 2.0]


def test_what_the_backend_keeps_is_described(wandb_dir: Path) -> None:
    (described,) = mlhooks.describe_backends(["wandb"])
    assert described.keeps == ("metrics", "params", "tags", "artifacts", "models", "datasets")
    assert described.skips == ()
    assert "mlhooks/step" in described.notes["metrics"]
    assert str(wandb_dir / "wandb") in described.location and "offline" in described.location
    backend = WandbBackend(project="p", dir=wandb_dir, settings={"x_label": "node-1"})
    rebuilt = WandbBackend(**backend.spec())  # how `mlhooks sync` rebuilds it
    assert rebuilt.spec() == backend.spec()
    assert backend.spec()["mode"] == "offline" and backend.spec()["dir"] == str(wandb_dir)


LEFT_OPEN_AT_EXIT = """
import sys, wandb, mlhooks
theirs = wandb.init(project="theirs", reinit="create_new")  # the user's own, never finished
theirs.log({"their_metric": 1.0})
run = mlhooks.start_run("left open", backends="wandb")
mlhooks.log_params({"lr": 0.5})
for step in range(2000):
    mlhooks.log_metric("loss", 1 / (step + 1), step=step)
print(run.run_id, theirs.id, flush=True)
sys.exit(3)
"""


def test_runs_open_at_exit_end_with_their_status_and_all_their_data(
    wandb_dir: Path, script: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """mlhooks ends the run at exit (FAILED: sys.exit(3)) and stores what is queued
    before W&B's service ends; W&B still finishes the user's own run."""
    done = script(LEFT_OPEN_AT_EXIT)
    assert done.returncode == 3, done.stderr
    run_id, their_id = done.stdout.split()
    stored = reading.load_run(wandb_dir, run_id)
    assert stored.exit_code == 1
    assert stored.config == {"lr": 0.5}
    assert stored.points("loss") == [(step, 1 / (step + 1)) for step in range(2000)]
    theirs = reading.load(reading.run_dirs(wandb_dir, their_id)[0])
    assert theirs.exit_code is not None  # finished by W&B's own exit step, run by us
    assert [row["their_metric"] for row in theirs.history] == [1.0]


A_FIT_THEN_EXIT = """
import mlhooks
mlhooks.autolog(backends=["wandb"])
from sklearn.linear_model import Ridge
Ridge(alpha=0.5).fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
print(mlhooks.active_run() is None, flush=True)
"""


def test_a_script_that_exits_right_after_a_fit_has_its_run_whole_in_wandb(
    wandb_dir: Path, script: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """Nothing was delivered before exit: W&B's service, started by the backend, ends
    only after mlhooks delivered the run at exit."""
    done = script(A_FIT_THEN_EXIT)
    assert done.returncode == 0, done.stderr
    (folder,) = (wandb_dir / "wandb").glob("offline-run-*")
    stored = reading.load(folder)
    assert stored.name == "Ridge" and stored.exit_code == 0
    assert stored.config["alpha"] == 0.5
    assert stored.artifact("model", f"model-{stored.run_id}").files.keys() == {"model.pkl"}
    assert "training_score" in stored.summary


KILLED_MID_RUN = """
import os, signal, time, mlhooks
from mlhooks.plugin import FitSession
run = mlhooks.start_run("killed", backends="wandb")
mlhooks.log_params({"lr": 0.5})
for step in range(100):
    mlhooks.log_metric("loss", step / 100, step=step)
assert mlhooks.flush(60)
time.sleep(1)  # W&B's service writes its run file every 0.2 s
fit = FitSession("fit", "fit")  # while a fit trains, the writer waits up to 10 s
fit.start()
for step in range(100, 200):  # in the journal within 0.5 s, not in W&B
    fit.log_metrics({"loss": step / 100}, step=step)
time.sleep(2)
print(run.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_process_s_run_is_completed_by_mlhooks_sync(
    wandb_dir: Path, script: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = script(KILLED_MID_RUN)
    assert done.returncode == -9, done.stderr
    run_id = done.stdout.split()[-1]
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync"], capture_output=True, text=True, timeout=300
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "1 run it left open ended KILLED" in synced.stdout
    first, resumed = (reading.load(folder) for folder in reading.run_dirs(wandb_dir, run_id))
    # Offline W&B resumes a run in a new folder; `wandb sync` uploads both to one run.
    assert first.name == resumed.name == "killed"
    assert first.config == {"lr": 0.5} and first.exit_code is None
    assert first.points("loss") == [(step, step / 100) for step in range(100)]
    assert resumed.points("loss") == [(step, step / 100) for step in range(100, 200)]
    assert resumed.exit_code == 255  # ended KILLED


FORKS = """
import os, mlhooks
with mlhooks.start_run("parent", backends="wandb") as parent:
    mlhooks.log_metric("loss", 1.0, step=0)
    assert mlhooks.flush(60)  # the parent's W&B run exists before the fork
    pid = os.fork()
    if pid == 0:  # the child logs into its parent's run, and into a run of its own
        mlhooks.log_metric("from_child", 2.0, step=1)
        with mlhooks.start_run("child", nested=True) as child:
            mlhooks.log_metric("loss", 3.0, step=0)
        assert mlhooks.flush(60)
        print(child.run_id, flush=True)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    mlhooks.log_metric("loss", 0.5, step=2)
print(parent.run_id, flush=True)
"""


def test_a_forked_child_logs_into_its_parents_run_and_its_own(
    wandb_dir: Path, script: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = script(FORKS)
    assert done.returncode == 0, done.stderr
    child_id, parent_id = done.stdout.split()
    parent = reading.load_run(wandb_dir, parent_id)  # one folder: never resumed elsewhere
    assert parent.points("loss") == [(0, 1.0), (2, 0.5)]
    assert parent.points("from_child") == [(1, 2.0)]
    assert parent.exit_code == 0  # ended by the parent, after the child was gone
    child = reading.load_run(wandb_dir, child_id)
    assert child.points("loss") == [(0, 3.0)] and child.exit_code == 0
    assert child.group == f"parent-{parent_id[:8]}"


NO_CREDENTIALS = """
import mlhooks
(described,) = mlhooks.describe_backends(["wandb"])
print(described.location)
with mlhooks.start_run("no login", backends="wandb") as run:
    mlhooks.log_metric("loss", 1.0)
print(run.run_id)
"""


def test_without_credentials_runs_are_written_offline_never_a_login_prompt(
    wandb_dir: Path,
    tmp_path: Path,
    script: Callable[..., subprocess.CompletedProcess[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WANDB_MODE")
    empty = tmp_path / "netrc"
    empty.write_text("")
    done = script(NO_CREDENTIALS, env={"NETRC": str(empty)}, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "no W&B credentials" in done.stderr and "wandb sync" in done.stderr
    location, run_id = done.stdout.splitlines()
    assert "offline" in location
    assert reading.load_run(wandb_dir, run_id).points("loss") == [(0, 1.0)]
