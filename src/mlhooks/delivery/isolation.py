"""Applying operations so that one a backend refuses for good never takes others with
it: a refused batch is split in halves until the refused entries are alone; they are
set aside with the reason, and everything else is stored, in order, once. A refused
bundle is stored again one operation at a time (a backend bundles only operations that
are harmless to store twice), each refused batch among them split as above.

A failure worth retrying (the backend is down) stops the work and says what is left,
so that a retry never applies twice what was already stored.
"""

from __future__ import annotations

from collections.abc import Callable

from mlhooks.backends.base import Backend, Bundle, LogBatch, Operation

Reject = Callable[[Operation, BaseException], None]
Applied = Callable[[Operation], None]


class NotStoredYet(Exception):
    """The backend failed in a way worth retrying; ``remaining`` is what it has not
    stored (the operation that failed first)."""

    def __init__(self, error: BaseException, remaining: list[Operation]) -> None:
        super().__init__(str(error))
        self.error = error
        self.remaining = remaining


def apply_isolating(
    backend: Backend, ops: list[Operation], reject: Reject, applied: Applied | None = None
) -> None:
    """Apply ``ops`` to ``backend`` in order. What it refuses for good is isolated and
    passed to ``reject``; a retryable failure raises :class:`NotStoredYet`."""
    work = list(ops)
    while work:
        op = work[0]
        try:
            backend.apply(op)
        except Exception as error:
            if backend.is_retryable(error):
                raise NotStoredYet(error, work) from error
            halves = split(op)
            if halves:
                work[0:1] = halves  # find the refused entries among the others
                continue
            reject(op, error)
        else:
            if applied is not None:
                for done in op.ops if isinstance(op, Bundle) else [op]:
                    applied(done)
        del work[0]


def split(op: Operation) -> list[Operation]:
    """``op`` as two smaller operations of the same kind, or [] when it cannot be
    split (one entry, or not a batch). Metrics come first, then params, then tags. A
    bundle splits into its operations."""
    if isinstance(op, Bundle):
        return list(op.ops)
    if not isinstance(op, LogBatch) or len(op) < 2:
        return []
    params, tags = list(op.params.items()), list(op.tags.items())
    middle = len(op) // 2
    first, second = LogBatch(op.run_id), LogBatch(op.run_id)
    first.metrics, second.metrics = op.metrics[:middle], op.metrics[middle:]
    middle -= len(first.metrics)
    first.params, second.params = dict(params[:middle]), dict(params[middle:])
    middle -= len(first.params)
    first.tags, second.tags = dict(tags[:middle]), dict(tags[middle:])
    return [first, second]
