"""``Backend.pin``: settings of the training process read as a run starts, carried with
its ``StartRun`` through the journal and the spools to wherever the backend stores it
(the writer service, ``mlhooks sync``), and given back to ``start_pinned_run``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import mlhooks
from mlhooks.backends.base import StartRun
from mlhooks.backends.local import LocalBackend
from mlhooks.backends.memory import MemoryBackend
from mlhooks.core.types import RunInfo
from mlhooks.delivery import spool
from mlhooks.delivery.journal import JournalFile, JournalWriter


class Pinning(MemoryBackend):
    """Pins ``$FAVOURITE`` as a run starts; keeps what each start was given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: dict[str, dict[str, Any] | None] = {}

    def pin(self, run: RunInfo) -> dict[str, Any] | None:
        favourite = os.environ.get("FAVOURITE")
        if favourite == "boom":
            raise RuntimeError("cannot read it")
        return {"favourite": favourite} if favourite else None

    def start_run(self, run: RunInfo) -> None:
        self.given[run.name] = None
        super().start_run(run)

    def start_pinned_run(self, run: RunInfo, pinned: dict[str, Any]) -> None:
        self.given[run.name] = pinned
        super().start_run(run)


def test_a_start_carries_what_its_backend_pinned_as_the_run_started(
    mlhooks_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinning, plain = Pinning(), MemoryBackend()
    monkeypatch.setenv("FAVOURITE", "tea")
    with mlhooks.start_run("tea", backends=[pinning, plain]) as run:
        monkeypatch.setenv("FAVOURITE", "coffee")  # later changes are not the run's
        mlhooks.log_metric("cups", 2.0)
    monkeypatch.delenv("FAVOURITE")
    with mlhooks.start_run("none", backends=[pinning]):
        pass
    assert mlhooks.flush(10)
    assert pinning.given == {"tea": {"favourite": "tea"}, "none": None}
    assert pinning.runs[run.run_id].metrics["cups"][0].value == 2.0
    assert plain.runs[run.run_id].info.name == "tea"  # the other backend's start as before


def test_a_pin_that_fails_is_one_warning_and_the_run_is_stored(
    mlhooks_clean: None, lenient: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinning = Pinning()
    monkeypatch.setenv("FAVOURITE", "boom")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("first", "second"):
            with mlhooks.start_run(name, backends=[pinning]):
                mlhooks.log_metric("loss", 1.0)
    assert mlhooks.flush(10)
    assert [str(w.message) for w in caught if "pinning" in str(w.message)] == [
        "mlhooks: backend 'memory' pinning its settings failed and was skipped; training is "
        "not affected (RuntimeError: cannot read it)"
    ]
    assert pinning.given == {"first": None, "second": None}
    assert {data.info.name for data in pinning.runs.values()} == {"first", "second"}


def test_what_was_pinned_comes_back_from_the_journal_and_a_spool(tmp_path: Path) -> None:
    pinned = {"favourite": "tea", "none": None, "nested": {"cups": [1, 2]}}
    starts = [StartRun(RunInfo("r1", "one"), pinned), StartRun(RunInfo("r2", "two"))]
    writer = JournalWriter(tmp_path, LocalBackend(tmp_path / "store"))
    writer.append(starts)
    journaled = [op for _, op, _ in JournalFile(writer.path).records()]
    spooled = [spool.decode(json.loads(json.dumps(spool.encode(op)))) for op in starts]
    for back in (journaled, spooled):
        assert [(op.run.run_id, op.pinned) for op in back] == [("r1", pinned), ("r2", None)]


def test_a_start_recorded_before_starts_carried_pins_reaches_start_run() -> None:
    """A journal or spool an older mlhooks wrote has no "pinned": the backend's
    ``start_run`` gets such a start, as it did then."""
    old = {"op": "start", "run": RunInfo("r1", "old").to_dict()}
    start = spool.decode(old)
    assert isinstance(start, StartRun) and start.pinned is None
    backend = Pinning()
    backend.apply(start)
    backend.apply(StartRun(RunInfo("r2", "new"), {"favourite": "tea"}))
    assert backend.given == {"old": None, "new": {"favourite": "tea"}}
