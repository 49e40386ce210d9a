"""The background writer: nothing lost at volume, on kill, on outage, past memory limits,
across fork, and at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.backends import BackendError, LogBatch
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery.lanes import Lane, RetryPolicy
from mlhooks.delivery.spool import find_spools
from mlhooks.testing import RecordedRuns, run_script, wait_until

FAST_RETRY = RetryPolicy(delays=(0.01, 0.02), probe_interval=0.1, max_probe_interval=0.2)


# -- volume ------------------------------------------------------------------------------


def test_a_million_points_come_back_in_order(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with mlhooks.start_run("volume", backends=[LocalBackend(store)]) as run:
        for step in range(500_000):
            mlhooks.log_metric("loss", step * 0.5, step=step)
            mlhooks.log_metric("acc", -step, step=step)
    data = LocalStore(store).get_run(run.run_id)
    assert data.info.status is RunStatus.FINISHED
    loss, acc = data.history("loss"), data.history("acc")
    assert len(loss) == len(acc) == 500_000
    assert [m.step for m in loss] == list(range(500_000))
    assert all(m.value == m.step * 0.5 for m in loss)
    assert all(m.value == -m.step for m in acc)


def test_steps_timestamps_and_special_values_are_kept_exactly(
    mlhooks_memory: RecordedRuns,
) -> None:
    values = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e308, 5e-324]
    with mlhooks.start_run("exact"):
        for i, value in enumerate(values):
            mlhooks.log_metric("v", value, step=10 * i - 5, timestamp=1_700_000_000_000 + i)
    points = mlhooks_memory.only_run().history("v")
    assert [p.step for p in points] == [10 * i - 5 for i in range(len(values))]
    assert [p.timestamp for p in points] == [1_700_000_000_000 + i for i in range(len(values))]
    assert [repr(p.value) for p in points] == [repr(v) for v in values]


# -- durability ----------------------------------------------------------------------------


def test_sigkill_after_flush_keeps_every_flushed_point(tmp_path: Path) -> None:
    store = tmp_path / "store"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, mlhooks
                from mlhooks.backends.local import LocalBackend
                run = mlhooks.start_run("killed", backends=[LocalBackend({str(store)!r})])
                for step in range(50_000):
                    mlhooks.log_metric("loss", step / 7, step=step)
                assert mlhooks.flush(60)
                print(run.run_id, flush=True)
                for step in range(50_000, 10_000_000):
                    mlhooks.log_metric("loss", step / 7, step=step)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    time.sleep(0.3)  # let it write some unflushed points too, maybe mid-line
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    data = LocalStore(store).get_run(run_id)
    points = data.history("loss")
    assert len(points) >= 50_000
    assert [p.step for p in points] == list(range(len(points)))
    assert all(p.value == p.step / 7 for p in points)
    assert data.info.status is RunStatus.RUNNING  # it never ended


def test_exit_without_flush_or_end_run_stores_everything(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = run_script(
        f"""
        import mlhooks
        from mlhooks.backends.local import LocalBackend
        run = mlhooks.start_run("exiting", backends=[LocalBackend({str(store)!r})])
        mlhooks.log_param("lr", 0.1)
        for step in range(200_000):
            mlhooks.log_metric("loss", float(step), step=step)
        print(run.run_id)
        """
    )
    assert result.returncode == 0, result.stderr
    data = LocalStore(store).get_run(result.stdout.strip())
    assert len(data.history("loss")) == 200_000
    assert data.params == {"lr": "0.1"}
    assert data.info.status is RunStatus.FINISHED


# -- outages -------------------------------------------------------------------------------


class FlakyBackend(MemoryBackend):
    """Fails with ConnectionError until ``up`` is set, like a server that is down."""

    name: ClassVar[str] = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.failures = 0

    def _check(self) -> None:
        if not self.up.is_set():
            self.failures += 1
            raise ConnectionError("connection refused")

    def start_run(self, run: Any) -> None:
        self._check()
        super().start_run(run)

    def log_batch(self, batch: LogBatch) -> None:
        self._check()
        super().log_batch(batch)

    def end_run(self, op: Any) -> None:
        self._check()
        super().end_run(op)


def test_a_backend_down_for_a_while_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0.01,0.02")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "0.1")
    backend = FlakyBackend()
    with pytest.warns(MlhooksWarning, match="connection refused"):
        with mlhooks.start_run("outage", backends=[backend]) as run:
            mlhooks.log_params({"lr": 0.1, "depth": 3})
            for step in range(10_000):
                mlhooks.log_metric("loss", 1 / (step + 1), step=step)
                if step == 5_000:
                    assert mlhooks.flush(30)  # spooled durably: flush does not hang
        assert backend.failures > 0
        assert backend.runs == {}
        backend.up.set()
        spools = Path(os.environ["MLHOOKS_LOCAL_DIR"]) / ".spool"
        wait_until(lambda: not find_spools(spools))  # replayed, then removed
    data = backend.run(run.run_id)
    assert [m.step for m in data.history("loss")] == list(range(10_000))
    assert data.params == {"lr": "0.1", "depth": "3"}
    assert data.info.status is RunStatus.FINISHED


def test_a_backend_down_until_exit_is_synced_later(tmp_path: Path) -> None:
    store, spool_root = tmp_path / "store", tmp_path / "runs"
    result = run_script(
        f"""
        import warnings, mlhooks
        from mlhooks.backends.local import LocalBackend

        class Unreachable(LocalBackend):  # spools as "local", so sync rebuilds a real one
            def apply(self, op):
                raise ConnectionError("tracking server unreachable")

        warnings.simplefilter("ignore")
        with mlhooks.start_run("offline", backends=[Unreachable({str(store)!r})]) as run:
            mlhooks.log_param("lr", 0.1)
            for step in range(1000):
                mlhooks.log_metric("loss", step / 3, step=step)
        print(run.run_id)
        """,
        env={
            "MLHOOKS_LOCAL_DIR": str(spool_root),
            "MLHOOKS_RETRY_DELAYS": "0.01",
            "MLHOOKS_FLUSH_TIMEOUT": "5",
            "MLHOOKS_EXIT_TIMEOUT": "5",
            "MLHOOKS_STRICT": "0",
        },
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    assert find_spools(spool_root / ".spool")
    assert not (store / run_id).exists()

    sync = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(spool_root)]
    first = subprocess.run(sync, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "synced" in first.stdout
    data = LocalStore(store).get_run(run_id)
    assert [m.step for m in data.history("loss")] == list(range(1000))
    assert data.params == {"lr": "0.1"}
    assert data.info.status is RunStatus.FINISHED

    again = subprocess.run(sync, capture_output=True, text=True, timeout=60)
    assert "nothing to sync" in again.stdout
    assert len(LocalStore(store).get_run(run_id).history("loss")) == 1000


def test_an_operation_rejected_for_good_is_kept_aside(
    mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    class Picky(MemoryBackend):
        def log_batch(self, batch: LogBatch) -> None:
            if "bad" in batch.params:
                raise BackendError("param 'bad' rejected", retryable=False)
            super().log_batch(batch)

    backend = Picky()
    with pytest.warns(MlhooksWarning, match="rejected"):
        with mlhooks.start_run("picky", backends=[backend]) as run:
            mlhooks.log_param("bad", 1)
            mlhooks.flush()
            mlhooks.log_metric("loss", 1.0)
    assert backend.run(run.run_id).history("loss")
    assert find_spools(Path(os.environ["MLHOOKS_LOCAL_DIR"]) / ".spool" / "rejected")


# -- bounded memory --------------------------------------------------------------------------


class SlowBackend(MemoryBackend):
    def log_batch(self, batch: LogBatch) -> None:
        time.sleep(0.002)
        super().log_batch(batch)


def test_memory_stays_bounded_past_the_limit_and_order_is_kept(tmp_path: Path) -> None:
    backend = SlowBackend()
    lane = Lane(backend, spool_dir=tmp_path / "spool", queue_limit=500, retry=FAST_RETRY)
    run = mlhooks.RunInfo(run_id="r1", name="bounded")
    lane.put(mlhooks.backends.StartRun(run))
    largest = 0
    spilled = False
    for step in range(20_000):
        lane.put(("r1", "loss", float(step), step, 0))
        largest = max(largest, lane.pending)
        spilled = spilled or any((tmp_path / "spool" / "overflow").glob("overflow-*"))
    assert lane.flush(60)
    assert largest <= 500
    assert spilled
    assert [m.step for m in backend.run("r1").history("loss")] == list(range(20_000))
    assert not any((tmp_path / "spool" / "overflow").glob("overflow-*"))


def test_flush_waits_for_everything_put_before_it(tmp_path: Path) -> None:
    backend = SlowBackend()
    with mlhooks.start_run("slow", backends=[backend]) as run:
        for step in range(3000):
            mlhooks.log_metrics({"a": step, "b": -step}, step=step)
        assert mlhooks.flush(60)
        assert len(backend.run(run.run_id).history("b")) == 3000


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_writes_its_own_points_and_nothing_twice(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with mlhooks.start_run("parent", backends=[LocalBackend(store)]) as run:
        for step in range(1000):
            mlhooks.log_metric("loss", float(step), step=step)
        assert mlhooks.flush(30)
        for step in range(1000, 1200):  # maybe still queued at the fork: the parent's own
            mlhooks.log_metric("loss", float(step), step=step)
        pid = os.fork()
        if pid == 0:  # the child logs into the run it inherited, with a fresh writer
            try:
                for step in range(500):
                    mlhooks.log_metric("child_loss", float(step), step=step)
                code = 0 if mlhooks.flush(30) else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for step in range(1200, 1500):
            mlhooks.log_metric("loss", float(step), step=step)
    data = LocalStore(store).get_run(run.run_id)
    assert [m.step for m in data.history("loss")] == list(range(1500))
    assert [m.step for m in data.history("child_loss")] == list(range(500))
