"""Regression tests for defects found in review: each test shows one defect stays fixed."""

from __future__ import annotations

import datetime
import functools
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mlhooks
import mlhooks.plugin
from fake_integration import FitModel
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.backends import LogBatch, LogModel, StartRun
from mlhooks.backends.local import LocalBackend, LocalStore
from mlhooks.backends.memory import MemoryBackend
from mlhooks.core.types import Capability, ModelArtifact, RunInfo
from mlhooks.delivery.lanes import Lane, RetryPolicy
from mlhooks.delivery.spool import find_spools
from mlhooks.delivery.staging import staging_root
from mlhooks.plugin import FitSession
from mlhooks.testing import RecordedRuns, run_script, wait_until

NO_RETRY = RetryPolicy(delays=(), probe_interval=60, max_probe_interval=60)


def spooled_ops(directory: Path) -> list[Any]:
    return [op for spool in find_spools(directory) for _, op in spool.pending()]


class GatedBackend(MemoryBackend):
    """Takes nothing until ``gate`` is set, like a backend that is slow to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def start_run(self, run: RunInfo) -> None:
        self.gate.wait(10)
        super().start_run(run)


class DownBackend(MemoryBackend):
    """A server that never answers."""

    def apply(self, op: Any) -> None:
        raise ConnectionError("server down")


# -- r1 ------------------------------------------------------------------------------------


def test_two_backends_sharing_a_params_batch_store_every_point_once() -> None:
    # Defect: the params LogBatch put on both lanes was mutated by the first lane's writer
    # (metric points merged into it), so the other lane stored those points twice.
    fast, slow = GatedBackend(), GatedBackend()
    fast.gate.set()
    try:
        with mlhooks.start_run("shared", backends=[fast, slow]) as run:
            mlhooks.log_param("lr", 0.1)
            for step in range(3):
                mlhooks.log_metric("loss", float(step), step=step)
            wait_until(
                lambda: run.run_id in fast.runs and len(fast.runs[run.run_id].history("loss")) == 3
            )
            slow.gate.set()  # the slow lane only now sees the batch the fast one handled
    finally:
        slow.gate.set()
    for backend in (fast, slow):
        data = backend.run(run.run_id)
        assert [m.step for m in data.history("loss")] == [0, 1, 2]
        assert data.params == {"lr": "0.1"}
        assert data.info.status is RunStatus.FINISHED


# -- r2 ------------------------------------------------------------------------------------


class DiesAfterOne(MemoryBackend):
    """Stores the first batch, then fails every later one: the server died."""

    name: ClassVar[str] = "dies-after-one"
    max_batch_size = 1  # one tag per batch: nothing merges

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def log_batch(self, batch: LogBatch) -> None:
        if any(data.tags for data in self.runs.values()):
            self.failures += 1
            raise ConnectionError("down")
        super().log_batch(batch)


def test_exit_spool_of_a_stuck_lane_holds_each_unstored_op_once(tmp_path: Path) -> None:
    # Defect: Lane.close() spooled the op already stored, and the writer, woken while
    # retrying, spooled the unstored ops a second time into another spool.
    spool_dir = tmp_path / "spool"
    backend = DiesAfterOne()
    backend.start_run(RunInfo(run_id="r", name="r"))
    lane = Lane(backend, spool_dir=spool_dir, retry=RetryPolicy(delays=(0.3,)))
    for i in range(3):
        lane.put(LogBatch("r", tags={"t": str(i)}))
    wait_until(lambda: backend.failures == 1)  # op 0 stored, op 1 in its retry wait
    lane.close(timeout=0.05)  # exit: the flush times out, leftovers are spooled
    wait_until(lambda: backend.failures == 2)  # the writer woke up and gave up on op 1
    wait_until(
        lambda: not any(t.name == "mlhooks-writer-dies-after-one" for t in threading.enumerate())
    )
    assert backend.run("r").tags == {"t": "0"}
    assert [op.tags for op in spooled_ops(spool_dir)] == [{"t": "1"}, {"t": "2"}]


# -- r3b / r3 ------------------------------------------------------------------------------


def test_a_model_with_datetime_metadata_is_spooled_while_the_backend_is_down(
    monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    # Defect: a model whose metadata JSON cannot encode made the spool raise; the model and
    # the rest of its chunk were dropped and flush() never completed.
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "60")
    with pytest.warns(MlhooksWarning, match="server down"):
        run = mlhooks.start_run("offline", backends=[DownBackend()])
        for step in range(1000):
            mlhooks.log_metric("loss", float(step), step=step)
        mlhooks.log_model([1, 2], "m", trained_at=datetime.datetime(2024, 1, 1))
        assert mlhooks.flush(3) is True
    ops = spooled_ops(Path(os.environ["MLHOOKS_LOCAL_DIR"]) / ".spool")
    assert isinstance(ops[0], StartRun) and ops[0].run.run_id == run.run_id
    points = [point for op in ops if isinstance(op, LogBatch) for point in op.metrics]
    assert [point[2] for point in points] == list(range(1000))
    models = [op.model for op in ops if isinstance(op, LogModel)]
    assert [model.name for model in models] == ["m"]
    assert models[0].metadata["trained_at"] == "2024-01-01 00:00:00"
    mlhooks.end_run(flush_timeout=0)


def test_an_unwritable_spool_directory_fails_flush_without_hanging_or_losing_ops(
    tmp_path: Path, lenient: None
) -> None:
    # Defect: with the backend down and the spool directory impossible to create, the
    # spool error dropped the chunk (flush marker included): flush() hung, ops were lost.
    blocker = tmp_path / "afile"
    blocker.write_text("a file where the spool folder should be")
    spool_dir = blocker / "spool"
    lane = Lane(DownBackend(), spool_dir=spool_dir, retry=NO_RETRY)
    with pytest.warns(MlhooksWarning) as caught:
        for step in range(5):
            lane.put(("r", "loss", float(step), step, 0))
        started = time.monotonic()
        assert lane.flush(2.0) is False
        assert time.monotonic() - started < 1.5
    assert any("spool of backend" in str(w.message) for w in caught)
    blocker.unlink()  # the disk is usable again: the held ops are spooled, none lost
    assert lane.flush(2.0) is True
    points = [point for op in spooled_ops(spool_dir) for point in op.metrics]
    assert [point[2] for point in points] == [0, 1, 2, 3, 4]
    lane.close(timeout=0.5)


# -- r4 ------------------------------------------------------------------------------------


def test_a_failing_recorder_event_still_reaches_other_listeners(
    tmp_path: Path, mlhooks_plugin: Any, lenient: None
) -> None:
    # Defect: the recorder ran outside emit()'s per-listener isolation, so when it raised
    # (a checkpoint already deleted) the listeners after it never saw the event.
    seen: list[str] = []

    class Listener:
        @mlhooks.hookimpl
        def on_model_saved(self, run: RunInfo, model: ModelArtifact) -> None:
            seen.append(model.name)

    mlhooks_plugin(Listener())
    backend = MemoryBackend()
    gone = tmp_path / "gone.ckpt"
    with pytest.warns(MlhooksWarning) as caught:
        with mlhooks.start_run("ckpt", backends=[backend]) as run:
            session = FitSession("fw", "fit")
            session.start()
            session.model_saved(ModelArtifact(name="ckpt", flavor="pytorch", path=str(gone)))
            session.end()
    ours = [str(w.message) for w in caught if issubclass(w.category, MlhooksWarning)]
    assert len(ours) == 1
    assert "no such file" in ours[0]
    assert seen == ["ckpt"]
    stored = backend.run(run.run_id)
    assert stored.models == []
    assert stored.info.status is RunStatus.FINISHED


# -- r5 ------------------------------------------------------------------------------------


def test_warnings_as_errors_do_not_break_an_autologged_fit(
    fake: Any, mlhooks_memory: RecordedRuns, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Defect: under `-W error`, our own sanitizing warning was raised to the user, the
    # original fit never ran and the managed run was left open.
    import fakefw

    class Odd(fakefw.Model):
        def get_params(self) -> dict[str, Any]:
            return {"bad\nkey": 1}

    mlhooks.autolog()
    model = Odd()
    with caplog.at_level(logging.WARNING, logger="mlhooks"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.fit([1, 2, 3]) is model
    assert [call[0] for call in fakefw.calls].count("fit") == 1
    assert mlhooks.active_run() is None
    stored = mlhooks_memory.only_run()
    assert stored.params == {"bad_key": "1"}
    assert stored.info.status is RunStatus.FINISHED
    assert "logged as 'bad_key'" in caplog.text


# -- r6 ------------------------------------------------------------------------------------


def test_a_patched_call_made_from_finish_is_not_a_second_fit(
    fake: Any, mlhooks_memory: RecordedRuns, mlhooks_plugin: Any
) -> None:
    # Defect: the re-entrancy guard covered only the original call, so a finish() that
    # evaluates through another patched function was tracked as a second fit.
    class EvaluatesInFinish(FitModel):
        def finish(self, session: FitSession, call: Any, result: Any) -> None:
            import fakefw

            fakefw.train({"lr": 0.5}, call.args[0], rounds=1)  # post-fit evaluation
            super().finish(session, call, result)

    fits: list[str] = []

    class Listener:
        @mlhooks.hookimpl
        def on_fit_start(self, fit: mlhooks.plugin.Fit) -> None:
            fits.append(fit.name)

    mlhooks_plugin(Listener())
    fake.integration.fit_handler = EvaluatesInFinish()
    mlhooks.autolog()
    import fakefw

    fakefw.Model().fit([1, 2])
    assert fits == ["Model"]
    assert [call[0] for call in fakefw.calls] == ["fit", "train", "train"]
    stored = mlhooks_memory.only_run()
    assert stored.info.name == "Model"
    assert stored.params == {"rounds": "3", "lr": "0.1"}


# -- r7 ------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_exiting_normally_leaves_the_parent_run_running(tmp_path: Path) -> None:
    # Defect: the child's atexit handler ended the parent's open run (FINISHED) in the
    # store while the parent was still training.
    store = tmp_path / "store"
    result = run_script(
        f"""
        import os, sys
        import mlhooks
        from mlhooks.backends.local import LocalBackend, LocalStore

        run = mlhooks.start_run("parent", backends=[LocalBackend({str(store)!r})])
        mlhooks.log_metric("loss", 0.0, step=0)
        assert mlhooks.flush(10)
        pid = os.fork()
        if pid == 0:
            mlhooks.log_metric("child_loss", 1.0, step=0)
            sys.exit(0)  # a normal exit: atexit handlers run
        os.waitpid(pid, 0)
        print(LocalStore({str(store)!r}).info(run.run_id).status.value)
        mlhooks.log_metric("loss", 1.0, step=1)
        mlhooks.end_run()
        print(run.run_id)
        """,
        env={**os.environ, "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs")},
    )
    assert result.returncode == 0, result.stderr
    status_after_child_exit, run_id = result.stdout.split()
    assert status_after_child_exit == RunStatus.RUNNING.value
    data = LocalStore(store).get_run(run_id)
    assert [m.step for m in data.history("child_loss")] == [0]  # the child's exit did flush
    assert [m.step for m in data.history("loss")] == [0, 1]
    assert data.info.status is RunStatus.FINISHED


# -- r8 ------------------------------------------------------------------------------------


class UnreachableLocal(LocalBackend):
    """Spools as "local", so `mlhooks sync` rebuilds a real local backend."""

    def apply(self, op: Any) -> None:
        raise ConnectionError("tracking server unreachable")


def test_sync_skips_a_spool_whose_writer_is_alive_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    # Defect: `mlhooks sync` replayed and removed the spool of a process still writing it,
    # so that process went on appending to a deleted file.
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "60")
    root, store = Path(os.environ["MLHOOKS_LOCAL_DIR"]), tmp_path / "store"
    with pytest.warns(MlhooksWarning, match="unreachable"):
        run = mlhooks.start_run("offline", backends=[UnreachableLocal(store)])
        for step in range(3):
            mlhooks.log_metric("loss", float(step), step=step)
        assert mlhooks.flush(5)
    (spool,) = find_spools(root / ".spool")
    pending = spool.count_pending()
    sync = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)]

    skipped = subprocess.run(sync, capture_output=True, text=True, timeout=60)
    assert skipped.returncode == 0, skipped.stderr
    assert f"process {os.getpid()} still writes it" in skipped.stdout
    assert spool.path.exists() and spool.count_pending() == pending
    assert not (store / run.run_id).exists()

    forced = subprocess.run([*sync, "--force"], capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert f"synced {pending} operations" in forced.stdout
    assert not spool.path.exists()
    data = LocalStore(store).get_run(run.run_id)
    assert [m.step for m in data.history("loss")] == [0, 1, 2]


def test_sync_stores_the_spool_of_a_writer_that_finished_but_was_never_reaped(
    tmp_path: Path,
) -> None:
    # Defect (CI, writer service): a service that spooled at exit and finished was still
    # listed by the kernel (nobody had reaped it), so `mlhooks sync` skipped its spool as
    # "still written" and stored nothing.
    root, store = tmp_path / "root", tmp_path / "store"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pathlib import Path\n"
            "from mlhooks.backends import StartRun\n"
            "from mlhooks.backends.local import LocalBackend\n"
            "from mlhooks.core.types import RunInfo\n"
            "from mlhooks.delivery.spool import SpoolWriter\n"
            "spool = SpoolWriter(Path(sys.argv[1]), LocalBackend(sys.argv[2]))\n"
            "spool.append([StartRun(RunInfo(run_id='r1', name='late'))])\n"
            "print('spooled', flush=True)\n"
            "sys.stdin.readline()\n",
            str(root / ".spool"),
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline() == "spooled\n"
    (spool,) = find_spools(root / ".spool")
    assert spool.being_written()  # its writer holds it open
    writer.stdin.close()  # the writer exits; not waited for, it stays a zombie
    wait_until(lambda: not spool.being_written(), timeout=30)
    assert Path(f"/proc/{writer.pid}").exists()  # not reaped yet
    sync = [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)]
    synced = subprocess.run(sync, capture_output=True, text=True, timeout=120)
    writer.wait()
    assert synced.returncode == 0, synced.stderr
    assert "still writes it" not in synced.stdout
    assert LocalStore(store).get_run("r1").info.name == "late"


# -- r9 ------------------------------------------------------------------------------------


def test_end_run_from_another_thread_clears_the_owner_threads_active_run() -> None:
    # Defect: end_run(run=...) from another thread left the ENDED run active on the owner
    # thread: its metrics were dropped and start_run() refused to start a new run.
    backend = MemoryBackend()
    seen: dict[str, Any] = {}

    def owner() -> None:  # its own thread: a stale run stack dies with it
        try:
            first = mlhooks.start_run("first", backends=[backend])
            ender = threading.Thread(target=lambda: mlhooks.end_run(run=first.info))
            ender.start()
            ender.join(10)
            seen["active after end"] = mlhooks.active_run()
            with mlhooks.start_run("second", backends=[backend]) as second:
                mlhooks.log_metric("loss", 1.0, step=0)
            seen["runs"] = first.run_id, second.run_id
        except BaseException as error:
            seen["error"] = error

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join(10)
    assert seen.get("active after end", "unset") is None
    assert "error" not in seen, seen.get("error")
    assert mlhooks.flush(5)
    first_id, second_id = seen["runs"]
    assert backend.run(first_id).info.status is RunStatus.FINISHED
    data = backend.run(second_id)
    assert [m.value for m in data.history("loss")] == [1.0]
    assert data.info.status is RunStatus.FINISHED


# -- r10 -----------------------------------------------------------------------------------


class GatedBatches(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def log_batch(self, batch: LogBatch) -> None:
        self.gate.wait(10)
        super().log_batch(batch)


def test_an_unpicklable_op_past_the_queue_limit_neither_raises_nor_loses_points(
    tmp_path: Path,
) -> None:
    # Defect: an op pickle refuses, spilled past queue_limit, made put() raise on the
    # training thread, and every spilled point was lost when the overflow was read back.
    backend = GatedBatches()
    lane = Lane(backend, spool_dir=tmp_path / "spool", queue_limit=10)
    model = ModelArtifact("m", "python", payload=b"x", metadata={"callback": lambda: 0})
    try:
        lane.put(StartRun(RunInfo(run_id="r", name="r")))
        for step in range(25_000):  # the writer is stuck: all but a few spill to disk
            lane.put(("r", "loss", float(step), step, 0))
            if step == 5_000:
                lane.put(LogModel("r", model))
    finally:
        backend.gate.set()
    assert lane.flush(10) is True
    data = backend.run("r")
    assert [m.step for m in data.history("loss")] == list(range(25_000))
    assert [m.name for m in data.models] == ["m"]
    assert not any((tmp_path / "spool" / "overflow").glob("overflow-*"))


# -- r11 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("keeps_wrapped", [True, False], ids=["wraps", "plain"])
def test_disable_stops_tracking_after_someone_else_wrapped_the_patch(
    fake: Any, mlhooks_memory: RecordedRuns, mlhooks_plugin: Any, keeps_wrapped: bool
) -> None:
    # Defect: re-patching over a third party's wrapper overwrote our patch record, so the
    # old wrapper stayed active and fits were still tracked after autolog(disable=True).
    fits: list[str] = []

    class Listener:
        @mlhooks.hookimpl
        def on_fit_start(self, fit: mlhooks.plugin.Fit) -> None:
            fits.append(fit.name)

    mlhooks_plugin(Listener())
    mlhooks.autolog()
    import fakefw

    ours = fakefw.Model.fit

    def other(*args: Any, **kwargs: Any) -> Any:  # another tracer patches fit
        return ours(*args, **kwargs)

    fakefw.Model.fit = functools.wraps(ours)(other) if keeps_wrapped else other
    mlhooks.autolog()  # new settings: patches again where needed
    fakefw.Model().fit([1.0])
    assert fits == ["Model"]  # tracked once, not by two patches
    mlhooks.autolog(disable=True)
    fakefw.Model().fit([1.0])
    assert fits == ["Model"]
    assert [call[0] for call in fakefw.calls].count("fit") == 2
    assert [run.info.name for run in mlhooks_memory.runs.values()] == ["Model"]


# -- r12 -----------------------------------------------------------------------------------


class MetricsOnly(MemoryBackend):
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.METRICS, Capability.PARAMS, Capability.TAGS}
    )


def test_a_staged_file_no_backend_takes_is_not_left_in_staging(tmp_path: Path) -> None:
    # Defect: with no lane able to take the op, the staged copy (a checkpoint can be GBs)
    # was never released and stayed in the staging folder forever.
    checkpoint = tmp_path / "ckpt.bin"
    checkpoint.write_bytes(b"x" * 1000)
    backend = MetricsOnly()
    with mlhooks.start_run("metrics-only", backends=[backend]) as run:
        mlhooks.log_metric("loss", 1.0, step=0)
        mlhooks.log_artifact(checkpoint)
        session = FitSession("fw", "fit")
        session.start()
        session.model_saved(ModelArtifact(name="ckpt", flavor="pytorch", path=str(checkpoint)))
        session.end()
    assert checkpoint.exists()
    assert not [p for p in staging_root().rglob("*") if p.is_file()]
    data = backend.run(run.run_id)
    assert [m.step for m in data.history("loss")] == [0]
    assert data.artifacts == [] and data.models == []
