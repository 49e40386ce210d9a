"""The built-in plugin that stores events: each event hook becomes backend operations
put on the lanes (see :mod:`mlhooks.delivery.lanes`) of the backends the run writes to.

Runs are bound to their backends when they start (:meth:`Recorder.bind`); each backend
only receives the operations its capabilities cover. Every param and tag passes
through here, so this is where secrets are masked (:mod:`mlhooks.core.redaction`).
A run may be *held* while
background work still reports to it (:meth:`Recorder.hold`): its end is then stored
once the last hold is released, after what that work reported.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlhooks.backends.base import (
    REQUIRED_CAPABILITY,
    Backend,
    EndRun,
    LogArtifact,
    LogBatch,
    LogDataset,
    LogModel,
    Operation,
    StartRun,
)
from mlhooks.backends.local import default_root
from mlhooks.core import redaction, settings
from mlhooks.core.errors import notice_once, report_internal_error
from mlhooks.core.hookspecs import hookimpl
from mlhooks.core.shutdown import Stage, in_forked_child
from mlhooks.core.types import Capability, DatasetInfo, ModelArtifact, RunInfo, RunStatus, now_ms
from mlhooks.delivery import service_client, staging
from mlhooks.delivery.journal import journal_dir
from mlhooks.delivery.lanes import Lane, flush_lanes, retry_policy_from_env
from mlhooks.delivery.recovery import recover_in_background

ENDED_RUNS_KEPT = 10_000
"""How many ended runs still take late reports (a few hundred bytes each)."""


class Recorder:
    """Turns events into operations for each run's backends."""

    def __init__(self) -> None:
        self._lanes: dict[int, Lane] = {}
        self._backends: dict[int, Backend] = {}
        self._runs: dict[str, tuple[Lane, ...]] = {}
        self._metric_lanes: dict[str, tuple[Lane, ...]] = {}
        self._ended: OrderedDict[str, tuple[Lane, ...]] = OrderedDict()
        """Lanes of the most recently ended runs, for what is reported after the end."""
        self._lock = threading.Lock()
        self._holds: dict[str, int] = {}
        self._held_ends: dict[str, tuple[RunInfo, EndRun]] = {}
        self._released = threading.Condition(self._lock)
        self.hurry = threading.Event()
        """Set while someone waits for held runs: background work should not defer."""

    # -- wiring -----------------------------------------------------------------------------

    def lane(self, backend: Backend) -> Lane:
        """The lane of ``backend``, created on first use."""
        key = id(backend)
        lane = self._lanes.get(key)
        if lane is None:
            with self._lock:
                lane = self._lanes.get(key)
                if lane is None:
                    root = Path(default_root())
                    journaled = backend.journaled and settings.get("MLHOOKS_JOURNAL")
                    remote = (
                        journaled and backend.out_of_process and settings.get("MLHOOKS_SERVICE")
                    )
                    lane = Lane(
                        backend,
                        spool_dir=root / ".spool",
                        retry=retry_policy_from_env(),
                        journal=journal_dir(root) if journaled else None,
                        service=service_client.client if remote else None,
                    )
                    if journaled:
                        recover_in_background(root)
                    self._lanes[key] = lane
                    self._backends[key] = backend  # keeps id(backend) from being reused
        return lane

    def bind(self, run: RunInfo, backends: Sequence[Backend]) -> None:
        """Send everything about ``run`` to ``backends`` (call before ``on_run_start``).
        A run started again (continued) while its earlier end waits for background work
        does not get that end: the run goes on, and its next end is stored."""
        lanes = tuple(self.lane(backend) for backend in backends)
        with self._lock:
            self._held_ends.pop(run.run_id, None)
        self._runs[run.run_id] = lanes
        self._metric_lanes[run.run_id] = self._capable(lanes, Capability.METRICS)

    def lanes_of(self, run_id: str) -> tuple[Lane, ...]:
        """The lanes of ``run_id``, open or recently ended (a child started late)."""
        return self._lanes_for(run_id)

    def _lanes_for(self, run_id: str) -> tuple[Lane, ...]:
        """The lanes of a run, open or among the last ``ENDED_RUNS_KEPT`` ended: what is
        reported about a run after it ended (an evaluation after the fit, a plot drawn
        in the background) is still stored with it."""
        lanes = self._runs.get(run_id)
        return lanes if lanes is not None else self._ended.get(run_id, ())

    @property
    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything reported so far is stored (or spooled), background
        work on held runs included."""
        deadline = None if timeout is None else time.monotonic() + timeout
        released = self.wait_released(None, timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return flush_lanes(self.lanes, left) and released

    # -- holds: background work that still reports to a run -----------------------------------

    def hold(self, run_id: str) -> None:
        """Keep ``run_id`` bound until :meth:`release`: an end reported meanwhile is
        stored after what is reported before the last release."""
        with self._lock:
            self._holds[run_id] = self._holds.get(run_id, 0) + 1

    def release(self, run_id: str) -> None:
        """Undo one :meth:`hold`; the last one stores the run's end if it came."""
        with self._lock:
            left = self._holds.get(run_id, 0) - 1
            if left > 0:
                self._holds[run_id] = left
                return
            self._holds.pop(run_id, None)
            if not self._holds:
                self.hurry.clear()
            held = self._held_ends.pop(run_id, None)
            if held is not None:
                self._end(*held)
            self._released.notify_all()

    def end_held_runs(self) -> None:
        """At exit, once background work had its time: store the ends it still holds
        (what it reports later goes to a spool with the rest), so that no run is left
        without its end."""
        with self._lock:
            held, self._held_ends = self._held_ends, {}
            self._holds.clear()
            self.hurry.clear()
            for run, op in held.values():
                self._end(run, op)
            self._released.notify_all()

    def wait_released(self, run_id: str | None, timeout: float | None = None) -> bool:
        """Wait until ``run_id`` (any run when None) has no holds; False on timeout."""
        with self._released:
            if self._holds:
                self.hurry.set()
            return self._released.wait_for(
                lambda: not self._holds if run_id is None else run_id not in self._holds,
                timeout,
            )

    def _end(self, run: RunInfo, op: EndRun) -> None:
        """Store the end of ``run`` (with ``_lock`` held); later reports about it still
        reach its backends."""
        self._put(run, op)
        lanes = self._runs.pop(run.run_id, None)
        self._metric_lanes.pop(run.run_id, None)
        if lanes:
            self._ended[run.run_id] = lanes
            while len(self._ended) > ENDED_RUNS_KEPT:
                self._ended.popitem(last=False)

    def _forget_holds_in_child(self) -> None:
        # A forked child does not run its parent's background work.
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self.hurry = threading.Event()
        self._holds.clear()
        self._held_ends.clear()

    @staticmethod
    def _capable(lanes: tuple[Lane, ...], needed: Capability | None) -> tuple[Lane, ...]:
        return tuple(lane for lane in lanes if lane.backend.supports(needed))

    def _put(
        self,
        run: RunInfo,
        op: Operation,
        snapshot: str | None = None,
        needed: Capability | None = None,
    ) -> None:
        """Put ``op`` on the lanes whose backend can store it. ``snapshot`` is a staged
        file the op refers to: each lane releases it once stored, and it is gone after
        the last one (at once when no lane takes it). A backend that cannot store it
        gets a notice, once per run and kind of data."""
        needed = needed or REQUIRED_CAPABILITY[type(op)]
        all_lanes = self._lanes_for(run.run_id)
        lanes = self._capable(all_lanes, needed)
        if needed is not None and len(lanes) < len(all_lanes):
            _notice_unsupported(run, op, needed, all_lanes, lanes)
        if snapshot is not None:
            if not lanes:
                staging.release(snapshot)  # no backend keeps it
            staging.hold(snapshot, len(lanes) - 1)
        for lane in lanes:
            lane.put(op)

    # -- event hooks --------------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def on_run_start(self, run: RunInfo) -> None:
        snapshot = RunInfo.from_dict(run.to_dict())  # later changes must not leak in
        snapshot.new, run.new = run.new, False  # the start carries it from now on
        snapshot.tags = redaction.redact(snapshot.tags)
        if snapshot.description:
            snapshot.description = redaction.redact_text(snapshot.description)
        lanes = self._lanes_for(run.run_id)  # every backend stores a start
        starts = [_pinned(lane.backend, StartRun(snapshot)) for lane in lanes]
        for lane, start in zip(lanes, starts, strict=True):
            lane.put(start)

    @hookimpl(tryfirst=True)
    def on_params(self, run: RunInfo, params: Mapping[str, Any]) -> None:
        if params:
            self._put(
                run,
                LogBatch(run.run_id, params=redaction.redact(params)),
                None,
                Capability.PARAMS,
            )

    @hookimpl(tryfirst=True)
    def on_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        if tags:
            batch = LogBatch(run.run_id, tags=redaction.redact(tags))
            self._put(run, batch, needed=Capability.TAGS)

    @hookimpl(tryfirst=True)
    def on_metrics(
        self, run: RunInfo, metrics: Mapping[str, float], step: int, timestamp: int
    ) -> None:
        run_id = run.run_id
        lanes = self._metric_lanes.get(run_id)
        if lanes is None:
            lanes = self._capable(self._ended.get(run_id, ()), Capability.METRICS)
        if len(lanes) == 1:
            put = lanes[0].put
            for key, value in metrics.items():
                put((run_id, key, value, step, timestamp))
            return
        for key, value in metrics.items():
            item = (run_id, key, value, step, timestamp)
            for lane in lanes:
                lane.put(item)

    @hookimpl(tryfirst=True)
    def on_dataset(self, run: RunInfo, dataset: DatasetInfo) -> None:
        if dataset.source:
            dataset = replace(dataset, source=redaction.redact_url(dataset.source))
        self._put(run, LogDataset(run.run_id, dataset))

    @hookimpl(tryfirst=True)
    def on_model_saved(self, run: RunInfo, model: ModelArtifact) -> None:
        snapshot = None
        if model.path is not None and model.payload is None:
            if staging.is_snapshot(model.path):  # saved into the staging area (tasks)
                snapshot = model.path
            else:
                model.path = snapshot = staging.stage_or_keep(model.path)  # it may change
        self._put(run, LogModel(run.run_id, model), snapshot)

    @hookimpl(tryfirst=True)
    def on_artifact(self, run: RunInfo, local_path: str, artifact_path: str | None) -> None:
        snapshot = local_path if staging.is_snapshot(local_path) else None
        self._put(run, LogArtifact(run.run_id, local_path, artifact_path), snapshot)

    @hookimpl(tryfirst=True)
    def on_run_end(self, run: RunInfo, status: RunStatus) -> None:
        op = EndRun(run.run_id, status.value, run.end_time or now_ms())
        with self._lock:
            if run.run_id in self._holds:
                self._held_ends[run.run_id] = (run, op)
            else:
                self._end(run, op)


def _pinned(backend: Backend, start: StartRun) -> StartRun:
    """``start`` with what ``backend`` pins for its run in this process
    (:meth:`Backend.pin`); as it is when the backend pins nothing or fails to."""
    try:
        pinned = backend.pin(start.run)
    except Exception as error:  # noqa: BLE001 - one warning; strict mode raises
        report_internal_error(f"backend {backend.name!r} pinning its settings", error)
        return start
    return start if pinned is None else StartRun(start.run, pinned)


def _what(op: Operation, needed: Capability) -> str:
    """``op``'s data, for a notice: "model 'clf'", "dataset 'X'", "params", ..."""
    if isinstance(op, LogModel):
        return f"model {op.model.name!r}"
    if isinstance(op, LogDataset):
        return f"dataset {op.dataset.name!r}"
    if isinstance(op, LogArtifact):
        return f"artifact {Path(op.local_path).name!r}"
    return needed.value


def _notice_unsupported(
    run: RunInfo,
    op: Operation,
    needed: Capability,
    all_lanes: tuple[Lane, ...],
    capable: tuple[Lane, ...],
) -> None:
    names = ", ".join(lane.backend.name for lane in capable)
    where = f"it goes to {names}" if names else "no backend of this run keeps it"
    for lane in all_lanes:
        if lane in capable:
            continue
        name = lane.backend.name
        notice_once(
            f"unsupported:{run.run_id}:{name}:{needed.value}",
            f"mlhooks: backend {name!r} does not keep {needed.value}, so {_what(op, needed)} "
            f"of run {run.name!r} is not stored there (nor later {needed.value} of this run); "
            f"{where}.",
        )


recorder = Recorder()
in_forked_child(recorder._forget_holds_in_child, Stage.RECORDER)
