"""Isolation of bad operations (issue 13, item 2): what a backend refuses for good is
found (a batch is split until the refused entries are alone), set aside with its
reason, and everything else is stored; a backend never stays down because of one
operation, and ``mlhooks sync`` lists, retries and survives what it finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import mlhooks
from conftest import mlhooks_cli
from mlhooks.backends.memory import MemoryBackend
from mlhooks.plugin import BackendError, LogBatch, Operation
from mlhooks.testing import run_script
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow.testing import mlflow_run_of


class Picky(MemoryBackend):
    """A store that refuses, for good, any metric key with "poison" in it."""

    name = "picky"

    def log_batch(self, batch: LogBatch) -> None:
        if any("poison" in key for key, _, _, _ in batch.metrics):
            raise BackendError("keys with 'poison' are refused", retryable=False)
        super().log_batch(batch)


def test_one_refused_point_leaves_its_batch_and_later_runs_stored(
    mlhooks_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 good points, one refused, 100 good, in one batch: 200 stored, one set aside
    with its reason; the next run is stored as usual."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")  # the warning users see, not an error
    backend = Picky()
    with (
        pytest.warns(mlhooks.MlhooksWarning, match="rejected an operation"),
        mlhooks.start_run("mixed", backends=[backend]) as mixed,
    ):
        for step in range(100):
            mlhooks.log_metric("loss", step / 100, step=step)
        mlhooks.log_metric("poison_pill", 1.0)
        for step in range(100, 200):
            mlhooks.log_metric("loss", step / 100, step=step)
    with mlhooks.start_run("later", backends=[backend]) as later:
        mlhooks.log_metric("loss", 0.5)
    assert len(backend.runs[mixed.run_id].history("loss")) == 200
    assert "poison_pill" not in backend.runs[mixed.run_id].metrics
    assert backend.runs[later.run_id].info.status.value == "FINISHED"
    listed = mlhooks_cli("sync", "--rejected", root=mlhooks.LocalStore().root)
    assert listed.returncode == 0, listed.stderr
    assert "1 rejected operations" in listed.stdout
    assert "keys with 'poison' are refused" in listed.stdout


def test_a_param_mlflow_refuses_is_set_aside_and_the_rest_of_the_run_stored(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """MLflow refuses to change a param of a run it has (a resumed run logging ``lr``
    anew): only that param is set aside, the 200 points around it are stored, and
    ``mlhooks sync --rejected --retry`` keeps it aside since MLflow still refuses it."""
    root = tmp_path / "mlhooks-runs"
    env = {"MLHOOKS_LOCAL_DIR": str(root), "MLHOOKS_BACKENDS": "mlflow", "MLHOOKS_STRICT": "0"}
    first = run_script(
        """
        import mlhooks
        with mlhooks.start_run("resumed") as run:
            mlhooks.log_param("lr", 0.1)
        print(run.run_id)
        """,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split()[-1]
    second = run_script(
        f"""
        import mlhooks
        with mlhooks.start_run("resumed", run_id={run_id!r}):
            for step in range(100):
                mlhooks.log_metric("loss", step / 100, step=step)
            mlhooks.log_param("lr", 0.2)  # MLflow keeps one value per param
            for step in range(100, 200):
                mlhooks.log_metric("loss", step / 100, step=step)
        """,
        env=env,
    )
    assert second.returncode == 0, second.stderr
    client = MlflowClient(mlflow_tracking_uri)
    stored = mlflow_run_of(client, run_id)
    assert stored.data.params == {"lr": "0.1"}
    steps = sorted(m.step for m in client.get_metric_history(stored.info.run_id, "loss"))
    assert steps == list(range(200))
    listed = mlhooks_cli("sync", "--rejected", root=root)
    assert listed.returncode == 0, listed.stderr
    assert "1 rejected operations" in listed.stdout and "param lr" in listed.stdout
    retried = mlhooks_cli("sync", "--rejected", "--retry", root=root)
    assert retried.returncode == 0, retried.stderr
    assert "1 operations refused again by mlflow" in retried.stderr
    assert "1 rejected operations" in mlhooks_cli("sync", "--rejected", root=root).stdout


def test_sync_skips_empty_torn_and_foreign_spool_files(tmp_path: Path) -> None:
    spool = tmp_path / ".spool"
    spool.mkdir()
    (spool / "mlflow-empty.spool.jsonl").write_text("")
    (spool / "mlflow-foreign.spool.jsonl").write_text("this is not json\n")
    (spool / "mlflow-torn.spool.jsonl").write_text('{"backend": "mlfl')
    done = mlhooks_cli("sync", root=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("is not a spool file") == 3
    assert "Traceback" not in done.stderr


class FlakyAfterRefusing(MemoryBackend):
    """Refuses a 4-point batch for good once (so it is split), then is down for the
    ``down_at``-th call: a backend that flaps while a refused batch is isolated."""

    name = "flaky"

    def __init__(self, down_at: tuple[int, ...]) -> None:
        super().__init__()
        self.calls, self.down_at, self.stored = 0, down_at, []  # type: ignore[var-annotated]

    def log_batch(self, batch: LogBatch) -> None:
        self.calls += 1
        if self.calls == 1:
            raise BackendError("a bad value in the batch", retryable=False)
        if self.calls in self.down_at:
            raise BackendError("server down", retryable=True)
        self.stored += [key for key, _, _, _ in batch.metrics]


FOUR_POINTS = LogBatch("r", [(k, 1.0, 0, 1) for k in "abcd"], {}, {})


def test_a_replay_that_fails_half_way_through_a_split_batch_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    """The first half of the split batch is stored, the second meets an outage: the
    next replay stores only the second half."""
    from mlhooks.delivery.spool import SpoolWriter, find_spools, replay

    backend = FlakyAfterRefusing(down_at=(3,))
    writer = SpoolWriter(tmp_path, backend)
    writer.append([FOUR_POINTS])
    writer.close()
    (spool,) = find_spools(tmp_path)
    with pytest.raises(BackendError, match="server down"):
        replay(spool, backend, reject=lambda op, error: None)
    assert backend.stored == ["a", "b"]
    replay(spool, backend, reject=lambda op, error: None)
    assert backend.stored == ["a", "b", "c", "d"]


def test_exit_spools_what_is_left_of_a_split_batch_once(tmp_path: Path) -> None:
    """The writer is retrying the second half of a split batch when the process
    exits: what exit takes over holds that half once, and not the stored half."""
    import threading
    import time

    from mlhooks.delivery.deliverer import Deliverer
    from mlhooks.delivery.spooler import Spooler

    backend = FlakyAfterRefusing(down_at=(2, 4))
    deliverer = Deliverer(backend, Spooler(backend, tmp_path, 5, 60), (0.2, 5.0), threading.Event())
    writer = threading.Thread(target=deliverer.deliver, args=([FOUR_POINTS],), daemon=True)
    writer.start()
    deadline = time.monotonic() + 10
    while backend.stored != ["a", "b"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the second half failed; the writer waits 5 s to retry it
    left = deliverer.abandon()
    assert [[key for key, _, _, _ in op.metrics] for op in left] == [["c", "d"]]


def test_a_value_mlflow_refuses_inside_a_bundle_is_set_aside_and_the_rest_stored(
    mlhooks_clean: None, mlflow_tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run's start, params (one of which changes a stored value, which MLflow
    refuses), tags, two datasets and its end reach the MLflow backend as one bundle: the bundle
    fails, is stored again one operation at a time, and only the refused param is set
    aside, with one warning; every other value lands once."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")  # the warning users see, not an error
    monkeypatch.setenv("MLHOOKS_JOURNAL_INTERVAL", "600")  # all of it at the run's end
    # The bundles are watched in this process: the backend must write here (in the
    # writer service the same lane code bundles the same way).
    monkeypatch.setenv("MLHOOKS_SERVICE", "0")
    bundles: list[list[str]] = []
    apply_bundle = MlflowBackend.apply_bundle

    def recorded(backend: MlflowBackend, ops: list[Operation]) -> None:
        bundles.append([type(op).__name__ for op in ops])
        apply_bundle(backend, ops)

    monkeypatch.setattr(MlflowBackend, "apply_bundle", recorded)
    with mlhooks.start_run("resumed", backends=["mlflow"], log_context=False) as run:
        mlhooks.log_param("lr", 0.1)
    with (
        pytest.warns(mlhooks.MlhooksWarning, match="rejected an operation") as warned,
        mlhooks.start_run("resumed", run_id=run.run_id, backends=["mlflow"], log_context=False),
    ):
        mlhooks.log_params({"lr": 0.2, "batch_size": 32, "layers": 3})  # lr: MLflow refuses
        mlhooks.set_tags({"team": "vision", "stage": "resumed"})
        mlhooks.log_dataset(np.zeros((10, 2)), name="X")
        mlhooks.log_dataset(np.ones(10), name="y")
    assert len([w for w in warned if "rejected" in str(w.message)]) == 1
    assert ["StartRun", "LogBatch", "LogDataset", "LogDataset", "EndRun"] in bundles

    client = MlflowClient(mlflow_tracking_uri)
    stored = mlflow_run_of(client, run.run_id)
    assert stored.data.params == {"lr": "0.1", "batch_size": "32", "layers": "3"}
    assert {"team": "vision", "stage": "resumed"}.items() <= stored.data.tags.items()
    assert sorted(i.dataset.name for i in stored.inputs.dataset_inputs) == ["X", "y"]
    assert stored.info.status == "FINISHED"
