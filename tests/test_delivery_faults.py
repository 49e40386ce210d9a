"""A disk that cannot take what the writer must put aside (full, read-only, a file where
a folder should be) while a backend refuses or fails: nothing escapes into the writer
thread, nothing is lost or stored twice, and each warning says what really happened."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

import mlhooks
from mlhooks import LocalStore, MlhooksWarning, RunInfo
from mlhooks.backends import BackendError, LogBatch, Operation, StartRun
from mlhooks.backends.local import LocalBackend
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery.lanes import Lane, RetryPolicy
from mlhooks.delivery.spool import find_spools

NO_RETRY = RetryPolicy(delays=(), probe_interval=60, max_probe_interval=60)


class Picky(LocalBackend):
    """A local store that refuses, for good, any param named ``bad``."""

    def log_batch(self, batch: LogBatch) -> None:
        if "bad" in batch.params:
            raise BackendError("param 'bad' refused", retryable=False)
        super().log_batch(batch)


def blocked_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A spool folder that cannot be made (a file stands where its parent should be),
    and that file, to remove when the disk should work again."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the spool's folder should be")
    return blocker / "spool", blocker


def picky_lane(tmp_path: Path, spool_dir: Path, journaled: bool) -> Lane:
    lane = Lane(
        Picky(tmp_path / "store"),
        spool_dir=spool_dir,
        retry=NO_RETRY,
        journal=tmp_path / "journal" if journaled else None,
    )
    lane.put(StartRun(RunInfo(run_id="r1", name="picky")))
    for step in range(10):
        lane.put(("r1", "loss", float(step), step, 0))
    lane.put(LogBatch("r1", params={"bad": "1", "good": "2"}))
    for step in range(10, 20):
        lane.put(("r1", "loss", float(step), step, 0))
    return lane


def ours(caught: pytest.WarningsRecorder) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MlhooksWarning)]


@pytest.mark.parametrize("journaled", [False, True], ids=["plain", "journaled"])
def test_a_refused_operation_that_cannot_be_set_aside_waits_in_memory(
    tmp_path: Path, journaled: bool
) -> None:
    """The backend refuses one param of a batch for good, and ``rejected/`` cannot be
    written: one warning says so; the rest of the batch and what follows is stored,
    each once; the refused param is written aside once the disk takes it."""
    spool_dir, blocker = blocked_folder(tmp_path)
    lane = picky_lane(tmp_path, spool_dir, journaled)
    with pytest.warns(MlhooksWarning) as caught:
        assert lane.flush(30)
    (warning,) = ours(caught)
    assert "rejected an operation (param 'bad' refused)" in warning
    assert "cannot be set aside" in warning and "kept in memory" in warning
    stored = LocalStore(tmp_path / "store").get_run("r1")
    assert [m.step for m in stored.history("loss")] == list(range(20))  # once each
    assert stored.params == {"good": "2"}

    blocker.unlink()  # the disk takes it again: the next round writes it aside
    with pytest.warns(MlhooksWarning, match="it was kept in"):
        assert lane.flush(30)
    (rejected,) = find_spools(spool_dir / "rejected")
    ((_, op, reason),) = list(rejected.entries())
    assert isinstance(op, LogBatch) and op.params == {"bad": "1"}
    assert reason == "BackendError: param 'bad' refused"
    lane.close(5)


def test_a_refused_operation_still_not_set_aside_at_exit_is_counted_as_lost(
    tmp_path: Path,
) -> None:
    spool_dir, _ = blocked_folder(tmp_path)
    lane = picky_lane(tmp_path, spool_dir, journaled=False)
    with pytest.warns(MlhooksWarning) as caught:
        assert lane.flush(30)
        lane.close(5)
    assert any(
        "1 operation that backend 'local' rejected could not be set aside" in message
        and "lost" in message
        for message in ours(caught)
    ), ours(caught)


class Down(LocalBackend):
    """A backend whose server does not answer (without a way to tell)."""

    def apply(self, op: object) -> None:
        raise ConnectionError("server down")


def test_what_can_be_neither_stored_nor_spooled_is_told_as_kept(
    tmp_path: Path, lenient: None
) -> None:
    """The backend is down and its spool's folder cannot be made: the warning says
    why the backend did not take the operations, that the spool cannot be written and
    that they are kept and tried again (nothing was skipped); once the disk takes
    them, they are spooled, each once."""
    spool_dir, blocker = blocked_folder(tmp_path)
    lane = Lane(Down(tmp_path / "store"), spool_dir=spool_dir, retry=NO_RETRY)
    with pytest.warns(MlhooksWarning) as caught:
        for step in range(5):
            lane.put(("r1", "loss", float(step), step, 0))
        assert lane.flush(5) is False
    (warning,) = ours(caught)
    assert warning == (
        f"mlhooks: backend 'local' ({lane.backend.describe()}) did not take some operations "
        f"(ConnectionError: server down), and the spool of backend 'local' in {spool_dir} "
        f"cannot be written (NotADirectoryError: [Errno 20] Not a directory: "
        f"'{spool_dir}'): they are kept, in order (in memory, and in the journal when "
        "there is one), and tried again (stored, or spooled) at the writer's next round. "
        "Training is not affected."
    )
    blocker.unlink()
    with pytest.warns(MlhooksWarning, match="is failing"):
        assert lane.flush(5) is True
    points = [
        point
        for spool in find_spools(spool_dir)
        for _, op in spool.pending()
        for point in op.metrics
    ]  # type: ignore[union-attr]
    assert [point[2] for point in points] == [0, 1, 2, 3, 4]
    lane.close(1)


# -- a run that ends before its data is stored -------------------------------------------------


class DownMemory(MemoryBackend):
    def apply(self, op: object) -> None:
        raise ConnectionError("server down")


class Gated(MemoryBackend):
    """Takes nothing until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def apply(self, op: Operation) -> None:
        self.gate.wait(60)
        super().apply(op)


def test_a_run_that_could_be_neither_stored_nor_spooled_says_so_not_that_it_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    """The backend is down and the spool cannot be written: ``end_run`` stops waiting
    as soon as the writer answers that it could do neither, and says so, with the
    time it really waited, not the flush timeout it did not wait for."""
    local_dir, blocker = blocked_folder(tmp_path)
    monkeypatch.setenv("MLHOOKS_LOCAL_DIR", str(local_dir))
    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "")
    with pytest.warns(MlhooksWarning) as caught:
        mlhooks.start_run("early", backends=[DownMemory()])
        mlhooks.log_metric("loss", 1.0)
        mlhooks.end_run(flush_timeout=120)
    (told,) = [m for m in ours(caught) if "ended before its data was stored" in m]
    assert re.fullmatch(
        r"mlhooks: run 'early' ended before its data was stored: after \d+\.\ds, backend "
        r"'memory' could neither store nor spool all of it \(see the warning about it\); "
        r"what is not stored is kept and written in the background",
        told,
    ), told
    assert "120" not in told
    blocker.unlink()  # the disk takes them: what was kept is spooled, and flush says so
    with pytest.warns(MlhooksWarning, match="is failing"):
        assert mlhooks.flush(30)
    assert find_spools(local_dir / ".spool")


def test_a_run_whose_flush_timeout_ran_out_says_how_long_it_waited_and_for_what(
    lenient: None,
) -> None:
    backend = Gated()
    with pytest.warns(MlhooksWarning) as caught:
        mlhooks.start_run("slow", backends=[backend])
        mlhooks.log_metric("loss", 1.0)
        mlhooks.end_run(flush_timeout=0.2)
    backend.gate.set()
    (told,) = [m for m in ours(caught) if "ended before its data was stored" in m]
    assert re.fullmatch(
        r"mlhooks: run 'slow' ended before its data was stored: it waited \d+\.\ds, the "
        r"flush timeout of 0\.2s, for backend 'memory'; what is not stored is kept and "
        r"written in the background",
        told,
    ), told
    assert mlhooks.flush(30)
