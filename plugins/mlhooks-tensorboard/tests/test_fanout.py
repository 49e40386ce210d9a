"""Several backends at once: MLflow (a real sqlite store or server) and TensorBoard get
the same runs; one of them slow or down never delays or loses the other's writes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import toyfw
from mlflow.tracking import MlflowClient
from toy_integration import ToyPlugin

import mlhooks
from mlhooks.backends import LogBatch
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery.recorder import recorder
from mlhooks_mlflow import RUN_ID_TAG
from mlhooks_mlflow.testing import MlflowServer, free_port
from mlhooks_tensorboard import reading

START = 1_700_000_000_000  # explicit timestamps: every point is known exactly


def log_points(count: int, keys: tuple[str, ...] = ("loss", "acc")) -> list[tuple[Any, ...]]:
    """Log ``count`` points over ``keys`` with known steps and timestamps; return them."""
    points = []
    for step in range(count // len(keys)):
        values = {key: step / 64 + index for index, key in enumerate(keys)}  # exact in f32
        mlhooks.log_metrics(values, step=step, timestamp=START + step)
        points += [(key, value, step, START + step) for key, value in values.items()]
    return points


def mlflow_points(client: MlflowClient, run_id: str, keys: tuple[str, ...]) -> list[Any]:
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
    )
    assert len(runs) == 1, f"{len(runs)} MLflow runs for {run_id}"
    found = []
    for key in keys:
        history = client.get_metric_history(runs[0].info.run_id, key)
        found += [(m.key, m.value, m.step, m.timestamp) for m in history]
    return found


def by_key_and_step(points: list[Any]) -> list[Any]:
    return sorted(points, key=lambda p: (p[0], p[2]))


def test_ten_thousand_points_reach_mlflow_and_tensorboard(tracking_uri: str, tb_root: Path) -> None:
    with mlhooks.start_run("fan-out", backends=["mlflow", "tensorboard"]) as run:
        mlhooks.log_params({"lr": 0.5, "layers": 4})
        points = log_points(10_000)
    assert len(points) == 10_000

    stored = reading.scalars(reading.find_run_dir(tb_root, run.run_id))
    assert stored == reading.expected_scalars(points)
    assert sum(len(s) for s in stored.values()) == 10_000
    assert reading.hparams(reading.find_run_dir(tb_root, run.run_id)) == {
        "lr": 0.5,
        "layers": 4.0,
    }

    client = MlflowClient(tracking_uri)
    assert by_key_and_step(mlflow_points(client, run.run_id, ("loss", "acc"))) == (
        by_key_and_step(points)
    )


@pytest.mark.parametrize("how", ["autolog", "environment", "start_run"])
def test_each_way_of_naming_backends_writes_the_run_to_both(
    how: str,
    tracking_uri: str,
    tb_root: Path,
    mlhooks_plugin: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlhooks_plugin(ToyPlugin(), name="toy")
    if how == "autolog":
        mlhooks.autolog(backends=["mlflow", "tensorboard"])
    elif how == "environment":
        monkeypatch.setenv("MLHOOKS_BACKENDS", "mlflow,tensorboard")
        mlhooks.autolog()
    else:
        mlhooks.autolog(backends=["local"])  # start_run's own setting wins
    with mlhooks.start_run(
        "both", backends=["mlflow", "tensorboard"] if how == "start_run" else None
    ) as run:
        toyfw.Regressor(epochs=4).fit([[0.0], [1.0]], [0.0, 1.0])
    assert [d.name for d in mlhooks.describe_backends()] == (
        ["local"] if how == "start_run" else ["mlflow", "tensorboard"]
    )
    client = MlflowClient(tracking_uri)
    from_mlflow = mlflow_points(client, run.run_id, ("loss",))
    assert [step for _, _, step, _ in from_mlflow] == [0, 1, 2, 3]
    stored = reading.scalars(reading.find_run_dir(tb_root, run.run_id))
    assert stored == reading.expected_scalars(from_mlflow)


class Gate(MemoryBackend):
    """A backend of our own that stores nothing until the test opens the gate."""

    name = "gate"
    capabilities: ClassVar = MemoryBackend.capabilities

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def log_batch(self, batch: LogBatch) -> None:
        if not self.open.wait(120):
            raise TimeoutError("the test never opened the gate")
        super().log_batch(batch)


def test_a_slow_backend_does_not_delay_tensorboard(tb_root: Path) -> None:
    gate = Gate()
    tensorboard = mlhooks.backend("tensorboard")
    run = mlhooks.start_run("slow and fast", backends=[gate, "tensorboard"])
    try:
        points = log_points(1000)  # returns although one backend takes nothing
        assert recorder.lane(tensorboard).flush(60)
        stored = reading.scalars(reading.find_run_dir(tb_root, run.run_id))
        assert stored == reading.expected_scalars(points)  # all there, the gate still shut
        held = gate.runs.get(run.run_id)  # its StartRun may not even be stored yet
        assert held is None or held.metrics == {}
    finally:
        gate.open.set()
    mlhooks.end_run()
    assert sum(len(p) for p in gate.runs[run.run_id].metrics.values()) == 1000


LOG_WHILE_MLFLOW_IS_DOWN = """
import mlhooks, sys
sys.path.insert(0, {tests!r})
from test_fanout import log_points
with mlhooks.start_run("outage", backends=["mlflow", "tensorboard"]) as run:
    mlhooks.log_params({{"lr": 0.5}})
    points = log_points(2000)
print(run.run_id)
"""


def test_mlflow_down_throughout_tensorboard_complete_then_sync_replays_mlflow(
    tb_root: Path,
    tmp_path: Path,
    new_mlflow_server: Callable[[], MlflowServer],
    script: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    mlflow_server = new_mlflow_server()
    # MLflow's address: a real server's port, with nothing listening on it yet.
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "MLHOOKS_RETRY_DELAYS": "0"}
    done = script(LOG_WHILE_MLFLOW_IS_DOWN.format(tests=str(Path(__file__).parent)), env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    assert "unreachable since" in done.stderr  # the user was told, training went on
    points = [
        (key, step / 64 + index, step, START + step)
        for step in range(1000)
        for index, key in enumerate(("loss", "acc"))
    ]

    # TensorBoard has everything although MLflow never answered.
    folder = reading.find_run_dir(tb_root, run_id)
    assert reading.scalars(folder) == reading.expected_scalars(points)
    assert reading.hparams(folder) == {"lr": 0.5}
    assert reading.session_end(folder)[0] == "STATUS_SUCCESS"  # type: ignore[index]

    # MLflow's share waits in a spool, named after the backend and how to rebuild it.
    spools = list((tmp_path / "mlhooks-runs" / ".spool").glob("mlflow-*.spool.jsonl"))
    assert len(spools) == 1
    header = json.loads(spools[0].read_text().splitlines()[0])
    assert header["backend"] == "mlflow"
    assert header["options"]["tracking_uri"] == mlflow_server.uri
    assert not list((tmp_path / "mlhooks-runs" / ".spool").glob("tensorboard-*"))

    mlflow_server.start()
    sync = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync"], capture_output=True, text=True, timeout=300
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "synced" in sync.stdout and not list(spools[0].parent.glob("mlflow-*.spool.jsonl"))
    client = MlflowClient(mlflow_server.uri)
    assert by_key_and_step(mlflow_points(client, run_id, ("loss", "acc"))) == (
        by_key_and_step(points)
    )
    (mlflow_run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
    )
    assert mlflow_run.data.params == {"lr": "0.5"}
    assert mlflow_run.info.status == "FINISHED"
    # TensorBoard's run was not written twice by the replay.
    assert reading.scalars(folder) == reading.expected_scalars(points)


def test_a_closed_port_is_an_unreachable_mlflow_too(
    tb_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: while MLflow cannot be reached, TensorBoard gets every point at once."""
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0")
    from mlhooks_mlflow import MlflowBackend

    down = MlflowBackend(tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.warns(mlhooks.MlhooksWarning, match="unreachable since"):
        with mlhooks.start_run("down", backends=[down, "tensorboard"]) as run:
            points = log_points(500)
            mlhooks.flush(60)
            assert recorder.lane(down).is_down
    stored = reading.scalars(reading.find_run_dir(tb_root, run.run_id))
    assert stored == reading.expected_scalars(points)


def test_a_run_opened_with_mlflow_start_run_reaches_tensorboard_with_its_params(
    tracking_uri: str,
    tb_root: Path,
    script: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """mlhooks logs into a run of ``mlflow.start_run()`` and never ends it; TensorBoard
    gets its scalars at once and its HParams row when the process exits."""
    done = script(
        """
        import mlflow, mlhooks
        mlhooks.autolog(backends=["mlflow", "tensorboard"])
        with mlflow.start_run(run_name="theirs") as active:
            mlhooks.log_params({"lr": 0.5})
            for step in range(3):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        print(active.info.run_id)
        """
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    folder = reading.find_run_dir(tb_root, run_id)
    assert folder.name == f"theirs-{run_id[:8]}"
    assert [s for s, _, _ in reading.scalars(folder)["loss"]] == [0, 1, 2]
    assert reading.hparams(folder) == {"lr": 0.5}
    assert reading.session_end(folder) is None  # mlhooks did not end it, so no status
    history = MlflowClient(tracking_uri).get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2]
