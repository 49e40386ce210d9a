"""Bundles: consecutive operations of one run that reach a lane's writer together go to
a backend that asks for them (``Backend.bundles``) as one ``Bundle``, to be stored in
fewer writes; a refused value in one is set aside alone, a bundle is never spooled or
journaled as such, and a backend that does not ask gets what it got before."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlhooks import DatasetInfo, MlhooksWarning, RunInfo
from mlhooks.backends import (
    BackendError,
    Bundle,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    Operation,
    StartRun,
)
from mlhooks.backends.memory import MemoryBackend
from mlhooks.delivery import journaling
from mlhooks.delivery.batching import Batcher, FlushMarker
from mlhooks.delivery.deliverer import Deliverer
from mlhooks.delivery.lanes import Lane
from mlhooks.delivery.spool import find_spools
from mlhooks.delivery.spooler import Spooler
from mlhooks.plugin import ModelArtifact


class Bundling(MemoryBackend):
    """Takes a run's start, params, tags, datasets and files together; refuses the
    param ``bad`` for good; refuses to connect while ``up`` is clear."""

    name: ClassVar[str] = "bundling"

    def __init__(self) -> None:
        super().__init__()
        self.bundled: list[list[str]] = []
        self.up = threading.Event()
        self.up.set()

    def bundles(self, op: Operation) -> bool:
        if isinstance(op, LogBatch):
            return not op.metrics
        return isinstance(op, StartRun | LogDataset | LogArtifact)

    def apply_bundle(self, ops: list[Operation]) -> None:
        self.bundled.append([type(op).__name__ for op in ops])
        super().apply_bundle(ops)

    def apply(self, op: Operation) -> None:
        if not self.up.is_set():
            raise ConnectionError("connection refused")
        if isinstance(op, LogBatch) and "bad" in op.params:
            raise BackendError("param 'bad' rejected", retryable=False)
        super().apply(op)


def dataset(name: str) -> LogDataset:
    return LogDataset("a", DatasetInfo(name=name, digest=name * 3, context="train"))


def a_fit(run_id: str = "a") -> list[Any]:
    """What a fit queues, in order: the start, the context's tags, the fit's params
    and tags, two datasets, metric points, the end."""
    return [
        StartRun(RunInfo(run_id=run_id, name=run_id)),
        LogBatch(run_id, tags={"context": "x"}),
        LogBatch(run_id, params={"alpha": "1.0"}, tags={"estimator": "Ridge"}),
        dataset("X"),
        dataset("y"),
        (run_id, "score", 0.9, 0, 0),
        EndRun(run_id, "FINISHED", 1),
    ]


def kinds(ops: list[Operation]) -> list[Any]:
    return [
        [type(o).__name__ for o in op.ops] if isinstance(op, Bundle) else type(op).__name__
        for op in ops
    ]


def test_a_runs_operations_the_backend_takes_together_become_one_bundle() -> None:
    [(ops, marker)] = list(Batcher.for_backend(Bundling()).segments(a_fit()))
    assert marker is None
    assert kinds(ops) == [
        ["StartRun", "LogBatch", "LogDataset", "LogDataset"],
        "LogBatch",
        "EndRun",
    ]
    bundle = ops[0]
    assert isinstance(bundle, Bundle) and bundle.run_id == "a" and len(bundle) == 6
    assert bundle.ops[1] == LogBatch(  # the tags and params merged as before
        "a", params={"alpha": "1.0"}, tags={"context": "x", "estimator": "Ridge"}
    )
    # A backend that does not ask gets what it always got.
    [(plain, _)] = list(Batcher.for_backend(MemoryBackend()).segments(a_fit()))
    assert kinds(plain) == [
        "StartRun",
        "LogBatch",
        "LogDataset",
        "LogDataset",
        "LogBatch",
        "EndRun",
    ]


def test_bundles_keep_to_one_run_the_size_limit_and_flush_markers() -> None:
    marker = FlushMarker()
    items = [*a_fit("a")[:2], a_fit("b")[0], dataset("X"), marker, dataset("y")]
    segments = list(Batcher(100, Bundling().bundles).segments(items))
    assert [kinds(ops) for ops, _ in segments] == [
        [["StartRun", "LogBatch"], "StartRun", "LogDataset"],  # run b's start between
        ["LogDataset"],  # not bundled across the flush marker
    ]
    [(small, _)] = list(Batcher(3, Bundling().bundles).segments(a_fit()[:5]))
    assert kinds(small) == [  # 1 + 1 tag, 2 params + 1 dataset, 1 dataset
        ["StartRun", "LogBatch"],
        ["LogBatch", "LogDataset"],
        "LogDataset",
    ]


class BundlingModels(Bundling):
    """Takes a run's models and its end together too."""

    def bundles(self, op: Operation) -> bool:
        return super().bundles(op) or isinstance(op, LogModel | EndRun)


def model(name: str) -> LogModel:
    return LogModel("a", ModelArtifact(name, "sklearn", b"weights"))


def test_a_model_is_bundled_only_last_or_just_before_its_runs_end() -> None:
    """What follows a model in a bundle would be stored after it, and a death in
    between would have the journal's replay store it again: only the run's end may
    (stored with it), and nothing after that end."""
    end = EndRun("a", "FINISHED", 1)
    items = [*a_fit()[:3], model("first"), dataset("X"), model("second"), end]
    [(ops, _)] = list(Batcher.for_backend(BundlingModels()).segments(items))
    assert kinds(ops) == [
        ["StartRun", "LogBatch", "LogModel"],
        ["LogDataset", "LogModel", "EndRun"],
    ]
    after_end = [model("m"), EndRun("a", "FINISHED", 1), dataset("late")]
    [(ops, _)] = list(Batcher.for_backend(BundlingModels()).segments(after_end))
    assert kinds(ops) == [["LogModel", "EndRun"], "LogDataset"]


def test_what_goes_to_a_spool_is_never_bundled() -> None:
    ops: list[Operation] = []
    Batcher.for_backend(Bundling()).extend(ops, a_fit())
    assert not any(isinstance(op, Bundle) for op in ops)


def test_a_journaled_lane_hands_a_fit_to_the_backend_in_one_bundle(tmp_path: Path) -> None:
    backend = Bundling()
    lane = Lane(backend, spool_dir=tmp_path / "spool", journal=tmp_path / "j")
    for item in a_fit():
        lane.put(item)
    journaling.journaler.round()
    assert lane.flush(30)
    assert backend.bundled == [["StartRun", "LogBatch", "LogDataset", "LogDataset"]]
    run = backend.run("a")
    assert run.params == {"alpha": "1.0"} and run.tags == {"context": "x", "estimator": "Ridge"}
    assert [d.name for d in run.datasets] == ["X", "y"]
    assert [m.value for m in run.history("score")] == [0.9]
    assert run.info.status.value == "FINISHED"
    lane.close(10)
    assert not list((tmp_path / "j").glob("*.journal"))  # every operation delivered


def parts(backend: Bundling, spool_dir: Path) -> tuple[Spooler, Deliverer]:
    spooler = Spooler(backend, spool_dir, probe_interval=0.01, max_probe_interval=0.04)
    return spooler, Deliverer(backend, spooler, (), threading.Event())


def test_a_refused_value_in_a_bundle_is_set_aside_alone(tmp_path: Path, lenient: None) -> None:
    backend = Bundling()
    _, deliverer = parts(backend, tmp_path)
    [(ops, _)] = list(
        Batcher.for_backend(backend).segments(
            [
                StartRun(RunInfo(run_id="a", name="a")),
                LogBatch("a", params={"good": "1", "bad": "2", "also": "3"}, tags={"t": "x"}),
                dataset("X"),
            ]
        )
    )
    with pytest.warns(MlhooksWarning, match="rejected") as warned:
        assert deliverer.deliver(ops)
    assert len(warned) == 1
    run = backend.run("a")
    assert run.params == {"good": "1", "also": "3"} and run.tags == {"t": "x"}
    assert [d.name for d in run.datasets] == ["X"]
    [rejected] = find_spools(tmp_path / "rejected")
    assert [op.params for _, op in rejected.pending()] == [{"bad": "2"}]  # type: ignore[attr-defined]


def test_a_bundle_the_backend_could_not_take_is_spooled_as_its_operations(
    tmp_path: Path, lenient: None
) -> None:
    backend = Bundling()
    spooler, deliverer = parts(backend, tmp_path)
    [(ops, _)] = list(Batcher.for_backend(backend).segments(a_fit()[:5]))
    backend.up.clear()
    with pytest.warns(MlhooksWarning, match="connection refused"):
        assert deliverer.deliver(ops)
    [spool] = find_spools(tmp_path)
    assert [type(op).__name__ for _, op in spool.pending()] == [
        "StartRun",
        "LogBatch",
        "LogDataset",
        "LogDataset",
    ]
    backend.up.set()
    spooler.probe()
    assert not spooler.is_down and not find_spools(tmp_path)
    run = backend.run("a")
    assert run.params == {"alpha": "1.0"} and [d.name for d in run.datasets] == ["X", "y"]
