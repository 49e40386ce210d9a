"""What a lane's queue holds, and how its writer turns a run of queued items into
backend operations.

The training thread queues metric points as plain tuples (building an object per point
halved throughput), other operations as they are, and a :class:`FlushMarker` when
someone waits for what came before it. The :class:`Batcher` merges consecutive metric
points, params and tags of one run into one ``LogBatch`` of at most the backend's
``max_batch_size`` entries, and cuts the run at each flush marker. The writer's batcher
of a backend that stores several operations of a run at once (``Backend.bundles``)
also gathers consecutive operations of one run that the backend accepts into a
``Bundle`` (the journal thread's does not: the journal holds operations one by one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mlhooks.backends.base import (
    Backend,
    Bundle,
    EndRun,
    LogBatch,
    LogModel,
    Operation,
    run_of,
)

#: A metric point as the training thread enqueues it: (run_id, key, value, step, timestamp).
MetricItem = tuple[str, str, float, int, int]


class FlushMarker:
    """A queued item that is done once everything queued before it is stored (``ok``)
    or spooled."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class Batcher:
    """Queued items -> operations, in order, in batches of at most ``max_batch_size``;
    with ``bundles`` (``Backend.bundles``), consecutive operations of a run it accepts
    in bundles of at most ``max_batch_size`` entries."""

    def __init__(
        self, max_batch_size: int, bundles: Callable[[Operation], bool] | None = None
    ) -> None:
        self.max_batch_size = max_batch_size
        self._bundles = bundles

    @classmethod
    def for_backend(cls, backend: Backend) -> Batcher:
        """The writer's batcher for ``backend``: it bundles only when the backend does."""
        bundles = backend.bundles if type(backend).bundles is not Backend.bundles else None
        return cls(backend.max_batch_size, bundles)

    def segments(self, items: list[Any]) -> Iterator[tuple[list[Operation], FlushMarker | None]]:
        """``items`` as operations, cut at each flush marker: ``(operations before it,
        marker)``, then ``(the rest, None)``, which may be empty. Lazily: a segment is
        batched when the one before it was handled."""
        ops: list[Operation] = []
        index, count = 0, len(items)
        while index < count:
            item = items[index]
            if type(item) is tuple:  # a run of metric points of one run: the bulk
                run_id = item[0]
                end = index + 1
                while end < count and type(items[end]) is tuple and items[end][0] == run_id:
                    end += 1
                self.add_points(ops, run_id, [point[1:] for point in items[index:end]])
                index = end
                continue
            if isinstance(item, FlushMarker):
                yield ops, item
                ops = []
            else:
                self.add(ops, item)
            index += 1
        yield ops, None

    def extend(self, ops: list[Operation], items: Iterable[Any]) -> None:
        """Append ``items`` to ``ops`` one by one, leaving flush markers out, without
        bundling (what is extended goes to a spool)."""
        bundles, self._bundles = self._bundles, None
        try:
            for item in items:
                if not isinstance(item, FlushMarker):
                    self.add(ops, item)
        finally:
            self._bundles = bundles

    def add_points(self, ops: list[Operation], run_id: str, points: list[Any]) -> None:
        """Append metric points, filling the last batch of the run up to the limit."""
        limit = self.max_batch_size
        last = ops[-1] if ops else None
        if isinstance(last, LogBatch) and last.run_id == run_id and len(last) < limit:
            room = limit - len(last)
            last.metrics.extend(points[:room])
            points = points[room:]
        for start in range(0, len(points), limit):
            ops.append(LogBatch(run_id, points[start : start + limit]))

    def add(self, ops: list[Operation], item: Any) -> None:
        """Append ``item`` to ``ops``, merging it into the last batch when it can (the
        last of a bundle too, when the backend takes ``item`` in one)."""
        if type(item) is tuple:
            self.add_points(ops, item[0], [item[1:]])
            return
        last = ops[-1] if ops else None
        size = _size(last) if last is not None else 0
        if isinstance(last, Bundle) and isinstance(item, LogBatch) and self._takes(item):
            last = last.ops[-1]
        if (
            isinstance(item, LogBatch)
            and isinstance(last, LogBatch)
            and last.run_id == item.run_id
            and size + len(item) <= self.max_batch_size
            and not (last.params.keys() & item.params.keys())
        ):
            last.metrics.extend(item.metrics)
            last.params.update(item.params)
            last.tags.update(item.tags)
        else:
            if isinstance(item, LogBatch):
                # A private copy: the queued batch may sit on other lanes too, and later
                # items merge into this one.
                item = LogBatch(item.run_id, list(item.metrics), dict(item.params), dict(item.tags))
            if self._bundles is None or not self._bundled(ops, item):
                ops.append(item)

    def _bundled(self, ops: list[Operation], op: Operation) -> bool:
        """Put ``op`` in a bundle with the operation before it, when the backend takes
        both together; False when it stays an operation of its own. A model is stored
        whole before what follows it in a bundle, and a replay of the journal after a
        death in between would store it again: it is followed in its bundle only by
        its run's end (which a backend may store with it), and that end by nothing."""
        last = ops[-1] if ops else None
        if last is None or run_of(last) != run_of(op):
            return False
        if _size(last) + _size(op) > self.max_batch_size:
            return False
        if isinstance(last, Bundle):
            if not self._takes(op) or not _may_follow(last.ops, op):
                return False
            last.ops.append(op)
            return True
        if not (self._takes(last) and self._takes(op) and _may_follow([last], op)):
            return False
        ops[-1] = Bundle(run_of(op), [last, op])
        return True

    def _takes(self, op: Operation) -> bool:
        return self._bundles is not None and self._bundles(op)


def _may_follow(ops: list[Operation], op: Operation) -> bool:
    """Whether ``op`` may follow ``ops`` in a bundle: not after a model, unless it is
    the run's end; nothing after a model and its run's end."""
    if isinstance(ops[-1], LogModel):
        return isinstance(op, EndRun)
    return not (isinstance(ops[-1], EndRun) and len(ops) > 1 and isinstance(ops[-2], LogModel))


def _size(op: Operation) -> int:
    """Entries of ``op`` towards ``max_batch_size``: a batch's, a bundle's, else one."""
    return len(op) if isinstance(op, LogBatch | Bundle) else 1
