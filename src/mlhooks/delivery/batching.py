"""What a lane's queue holds, and how its writer turns a run of queued items into
backend operations.

The training thread queues metric points as plain tuples (building an object per point
halved throughput), other operations as they are, and a :class:`FlushMarker` when
someone waits for what came before it. The :class:`Batcher` merges consecutive metric
points, params and tags of one run into one ``LogBatch`` of at most the backend's
``max_batch_size`` entries, and cuts the run at each flush marker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from mlhooks.backends.base import LogBatch, Operation

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
    """Queued items -> operations, in order, in batches of at most ``max_batch_size``."""

    def __init__(self, max_batch_size: int) -> None:
        self.max_batch_size = max_batch_size

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
        """Append ``items`` to ``ops`` one by one, leaving flush markers out."""
        for item in items:
            if not isinstance(item, FlushMarker):
                self.add(ops, item)

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
        """Append ``item`` to ``ops``, merging it into the last batch when it can."""
        if type(item) is tuple:
            self.add_points(ops, item[0], [item[1:]])
            return
        last = ops[-1] if ops else None
        if (
            isinstance(item, LogBatch)
            and isinstance(last, LogBatch)
            and last.run_id == item.run_id
            and len(last) + len(item) <= self.max_batch_size
            and not (last.params.keys() & item.params.keys())
        ):
            last.metrics.extend(item.metrics)
            last.params.update(item.params)
            last.tags.update(item.tags)
        elif isinstance(item, LogBatch):
            # A private copy: the queued batch may sit on other lanes too, and later
            # items merge into this one.
            ops.append(
                LogBatch(item.run_id, list(item.metrics), dict(item.params), dict(item.tags))
            )
        else:
            ops.append(item)
