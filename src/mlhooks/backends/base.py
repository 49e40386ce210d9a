"""The backend contract: the operations a store receives and the class it implements.

The recorder turns events into *operations* (``StartRun``, ``LogBatch``, ...). The
background writer batches them and calls one method of the :class:`Backend` per
operation, on its own thread, never on the training thread. Operations serialise to
JSON so that the writer can spool them to disk when a backend is down and replay them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mlhooks.core.types import ALL_CAPABILITIES, Capability, DatasetInfo, ModelArtifact, RunInfo


@dataclass
class StartRun:
    run: RunInfo
    pinned: dict[str, Any] | None = None
    """What the backend's :meth:`Backend.pin` returned for the run in the process that
    started it, carried to wherever the backend stores it (the writer service,
    ``mlhooks sync``); None when it pinned nothing."""


#: A metric point in a batch: (key, value, step, timestamp in ms). Plain tuples keep the
#: writer cheap; :class:`mlhooks.Metric` has the same fields in the same order.
Point = tuple[str, float, int, int]


@dataclass
class LogBatch:
    """Metrics, params and tags for one run, in the order they were reported.

    Unpack each point as ``for key, value, step, timestamp in batch.metrics``.
    """

    run_id: str
    metrics: list[Point] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


@dataclass
class LogArtifact:
    run_id: str
    local_path: str
    """A staged snapshot of the user's file or directory, owned by mlhooks."""
    artifact_path: str | None = None


@dataclass
class LogModel:
    run_id: str
    model: ModelArtifact


@dataclass
class LogDataset:
    run_id: str
    dataset: DatasetInfo


@dataclass
class EndRun:
    run_id: str
    status: str
    end_time: int


@dataclass
class Bundle:
    """Consecutive operations of one run that reached the writer together, for a
    backend that stores them in fewer writes than one by one (see
    :meth:`Backend.bundles`). The writer makes them; they are never journaled or
    spooled (their operations are, one by one)."""

    run_id: str
    ops: list[Operation]

    def __len__(self) -> int:
        return sum(len(op) if isinstance(op, LogBatch) else 1 for op in self.ops)


Operation = StartRun | LogBatch | LogArtifact | LogModel | LogDataset | EndRun | Bundle


def run_of(op: Operation) -> str:
    """The run ``op`` belongs to."""
    return op.run.run_id if isinstance(op, StartRun) else op.run_id


def unbundled(ops: list[Operation]) -> list[Operation]:
    """``ops`` with each bundle replaced by its operations."""
    if not any(isinstance(op, Bundle) for op in ops):
        return ops
    return [part for op in ops for part in (op.ops if isinstance(op, Bundle) else [op])]


#: The capability an operation needs; ``None`` means every backend receives it.
REQUIRED_CAPABILITY: dict[type, Capability | None] = {
    StartRun: None,
    EndRun: None,
    LogBatch: None,
    LogArtifact: Capability.ARTIFACTS,
    LogModel: Capability.MODELS,
    LogDataset: Capability.DATASETS,
    Bundle: None,
}


class BackendError(Exception):
    """A backend could not store an operation. ``retryable`` says whether trying again
    later may succeed (a server down) or not (a value the store rejects)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Backend(abc.ABC):
    """A place where runs are stored.

    Subclasses set ``name`` and ``capabilities`` and implement the ``start_run`` ...
    ``end_run`` methods. All methods are called from one writer thread per backend, in
    the order the operations were reported (but :meth:`pin`, called on the training
    thread). Raise on failure: the writer retries, then spools the operation to disk
    and replays it when the backend answers again.

    A backend that reads settings of the training process when it creates a run (an
    environment variable, a global of its library the user set) reads them in
    :meth:`pin` instead, as a run starts: what it returns travels with the run's
    :class:`StartRun` through the journal and the spools, and comes back to
    :meth:`start_pinned_run` in whichever process stores the run (this one, the writer
    service, ``mlhooks sync``), which may not see the settings as they were then.
    """

    name: ClassVar[str] = "backend"
    capabilities: ClassVar[frozenset[Capability]] = ALL_CAPABILITIES
    #: Limits of what a capability covers, for humans: ``{Capability.ARTIFACTS: "images only"}``.
    capability_notes: ClassVar[Mapping[Capability, str]] = {}
    #: Most metrics, params and tags the writer hands over in one ``log_batch`` call.
    max_batch_size: ClassVar[int] = 1000
    #: Seconds the writer lets points gather between two writes (a flush, a full batch
    #: or exit write at once). A backend whose every call is costly sets more: fewer,
    #: larger batches take less CPU (and GIL) from the training thread.
    write_interval: ClassVar[float] = 0.05
    #: Whether the backend's operations go through the write-ahead journal, so that
    #: ``mlhooks sync`` or the next process stores what a killed process had not
    #: (rebuilding the backend from :meth:`spec`). A store that lives in the process's
    #: memory has nothing to recover into and sets False.
    journaled: ClassVar[bool] = True
    #: Whether the backend may run in the writer service (``MLHOOKS_SERVICE``): a child
    #: process that rebuilds it from :meth:`spec` and stores what the training process
    #: journals, so that its work takes no CPU or GIL from training. Declare it for a
    #: journaled backend whose work is heavy Python and that :meth:`spec` rebuilds
    #: whole (nothing it needs lives only in the training process). False by default:
    #: a backend that relies on state of the training process (an SDK's own exit hooks,
    #: an object the user built) stays in process.
    out_of_process: ClassVar[bool] = False

    def supports(self, capability: Capability | None) -> bool:
        return capability is None or capability in self.capabilities

    @abc.abstractmethod
    def start_run(self, run: RunInfo) -> None:
        """Create ``run`` (its parent, when it has one, was created before)."""

    def pin(self, run: RunInfo) -> dict[str, Any] | None:
        """Called on the training thread as ``run`` starts (before its
        :class:`StartRun` is queued for this backend): the settings of this process that
        :meth:`start_pinned_run` will need, as plain JSON data (str keys; str, number,
        bool, None, lists and dicts of them), or None when it needs none (the default).
        Keep it as cheap as reading a few variables: no I/O, no import of a library the
        user's program did not import. An exception is one warning; the run then
        starts without what it would have pinned."""
        return None

    def start_pinned_run(self, run: RunInfo, pinned: dict[str, Any]) -> None:
        """Create ``run`` with what :meth:`pin` returned for it in the process that
        started it (called instead of :meth:`start_run` when that was not None). A start
        recorded by an mlhooks that did not pin arrives at :meth:`start_run`. The
        default ignores ``pinned``."""
        self.start_run(run)

    @abc.abstractmethod
    def log_batch(self, batch: LogBatch) -> None:
        """Store metrics (with their exact steps and timestamps), params and tags."""

    def log_artifact(self, op: LogArtifact) -> None:
        """Store a staged file or directory."""
        raise NotImplementedError(f"backend {self.name!r} does not store artifacts")

    def log_model(self, op: LogModel) -> None:
        """Store a model."""
        raise NotImplementedError(f"backend {self.name!r} does not store models")

    def log_dataset(self, op: LogDataset) -> None:
        """Store a dataset fingerprint."""
        raise NotImplementedError(f"backend {self.name!r} does not store datasets")

    @abc.abstractmethod
    def end_run(self, op: EndRun) -> None:
        """Mark the run ended with ``op.status``."""

    def bundles(self, op: Operation) -> bool:
        """Whether ``op`` may be stored together with the operations of its run next to
        it, in a :class:`Bundle` given to :meth:`apply_bundle`. Say yes only for
        operations that are harmless to store twice: when a bundle fails, its
        operations are stored again one by one (so that a value the backend refuses
        is set aside alone, and the rest lands), and a retry or a replay of the journal
        stores the whole bundle again. A model joins a bundle only as its last
        operation or just before its run's end (then the last): a bundle stored again
        finds it stored (the backend must take it up, not store it twice), and nothing
        stored after it can make a replay store it again. None by default."""
        return False

    def apply_bundle(self, ops: list[Operation]) -> None:
        """Store consecutive operations of one run, each of which :meth:`bundles`
        accepted, in order as far as anyone reading the store can tell (fewer writes
        than one by one is the point). The default stores them one by one."""
        for op in ops:
            self.apply(op)

    def prepare(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once, on this backend's writer thread, before its first write:
        import here what the writer needs (never on the training thread, where an
        import of a second would show in the training's time). What another thread of
        mlhooks may use too must be imported under a lock of the backend's own. Called
        in the writer service too, on its writer thread."""

    def prepare_model(self, flavor: str, modules: Sequence[str]) -> None:  # noqa: B027
        """Optional, empty by default. Called in the writer service, off any training
        thread, when a fit that will report a model of ``flavor`` starts (once the
        service may start its backends): import what saving such a model needs, and
        ``modules`` (which rebuilding the captured model imports: its framework's, each
        already imported by the training process), so that the fit's end does not wait
        for them. Called after :meth:`prepare`, on the service's shared instance of the
        backend, perhaps while another thread saves a model: import under the lock
        your save imports its model's modules (and unpickles) under. A failure is
        ignored (the model's save reports what goes wrong)."""

    def flush(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Make everything written so far durable. Called at run end and on ``flush()``."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources at interpreter exit."""

    def after_fork(self) -> None:  # noqa: B027 - optional hook, empty by default
        """In a forked child, before its first use: drop what belongs to the parent
        (open files, connections, buffers) without flushing or closing it."""

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` may go away if the operation is tried again later."""
        if isinstance(error, BackendError):
            return error.retryable
        return isinstance(error, (OSError, ConnectionError, TimeoutError))

    def check(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Raise when the backend cannot store anything now (``mlhooks doctor`` asks
        each configured backend). The default does not check."""

    def reachable(self) -> bool | None:
        """Whether the backend answers right now, asked cheaply and within a couple of
        seconds (a server's health endpoint with a short timeout, no retries): True,
        False, or None when this backend cannot tell (the default).

        The writer asks it, from a thread of its own, while a write takes long or the
        backend has not answered for a while, so that an outage is reported within
        seconds and runs ending meanwhile do not wait for it; and before it replays a
        spool. Make it thread-safe, and return False rather than raise when the
        backend does not answer."""
        return None

    def spec(self) -> dict[str, Any]:
        """Options that rebuild an equivalent backend (``mlhooks sync`` uses them)."""
        return {}

    def describe(self) -> str:
        """Where this backend writes, for humans."""
        return self.name

    def apply(self, op: Operation) -> None:
        """Call the method that stores ``op``."""
        if isinstance(op, LogBatch):
            self.log_batch(op)
        elif isinstance(op, StartRun):
            if op.pinned is None:
                self.start_run(op.run)
            else:
                self.start_pinned_run(op.run, op.pinned)
        elif isinstance(op, EndRun):
            self.end_run(op)
        elif isinstance(op, LogArtifact):
            self.log_artifact(op)
        elif isinstance(op, LogModel):
            if op.model.format == ModelArtifact.UNSAVEABLE:  # it says why
                reason = op.model.metadata.get("reason") or f"model {op.model.name!r} unsaveable"
                raise BackendError(str(reason), retryable=False)
            self.log_model(op)
        elif isinstance(op, LogDataset):
            self.log_dataset(op)
        elif isinstance(op, Bundle):
            self.apply_bundle(op.ops)
        else:  # pragma: no cover - the union above is exhaustive
            raise TypeError(f"unknown operation {op!r}")


BackendFactory = Callable[..., Backend]
