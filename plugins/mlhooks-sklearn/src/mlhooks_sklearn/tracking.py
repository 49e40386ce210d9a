"""What is remembered about tracked models and their predictions, weakly.

A fitted model keeps the session of its fit (to log into that run later: evaluation
datasets, post-training metrics). A prediction of a tracked model keeps which model
and which data it came from, so that a metric computed on it can say so. Entries go
when the object is garbage-collected; nothing here keeps a model or an array alive.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from mlhooks.plugin import FitSession


@dataclass
class ModelRecord:
    """A tracked, fitted model."""

    session: FitSession
    dataset_names: dict[int, tuple[Any, str]] = field(default_factory=dict)
    """id(evaluation data) -> (a weak reference to it, or None, its name in metric keys)."""
    names_in_use: dict[str, int] = field(default_factory=dict)
    """variable name -> how many distinct datasets were seen under it."""
    metric_calls: dict[str, int] = field(default_factory=dict)
    """metric key -> how many times it was logged (the next gets ``-<n+1>``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metric_key(self, metric: str, dataset: str) -> str:
        """``{metric}[-{call}]_{dataset}``, as MLflow's post-training metrics."""
        base = f"{metric}_{dataset}"
        with self.lock:
            calls = self.metric_calls.get(base, 0) + 1
            self.metric_calls[base] = calls
        return base if calls == 1 else f"{metric}-{calls}_{dataset}"

    def knows(self, data: Any) -> bool:
        """Whether ``data`` (this very object) was evaluated before."""
        entry = self.dataset_names.get(id(data))
        return entry is not None and (entry[0] is None or entry[0]() is data)

    def dataset_name(self, data: Any, variable: str | None) -> str:
        """A name for evaluation data: its variable name, made unique per dataset
        (``X_test``, ``X_test-2``); ``eval_dataset`` when it has none."""
        with self.lock:
            if self.knows(data):
                return str(self.dataset_names[id(data)][1])
            base = variable or "eval_dataset"
            count = self.names_in_use[base] = self.names_in_use.get(base, 0) + 1
            name = base if count == 1 else f"{base}-{count}"
            try:
                ref: Any = weakref.ref(data)
            except TypeError:  # a list: known by id only
                ref = None
            self.dataset_names[id(data)] = (ref, name)
            return name


@dataclass(frozen=True)
class Prediction:
    record: ModelRecord
    dataset: str


class _Registry:
    """id(object) -> value, dropped when the object goes (objects need not be hashable)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def put(self, obj: Any, value: Any) -> bool:
        key = id(obj)

        def forget(_: object) -> None:
            self._entries.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:  # a float, a list: cannot be followed
            return False
        self._entries[key] = (ref, value)
        return True

    def get(self, obj: Any) -> Any:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return entry[1]

    def discard(self, obj: Any) -> None:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            del self._entries[id(obj)]

    def clear(self) -> None:
        self._entries.clear()


models = _Registry()
"""model -> ModelRecord"""
predictions = _Registry()
"""prediction array -> Prediction"""


def remember_model(model: Any, session: FitSession) -> None:
    """Keep the ended ``session`` of ``model``'s fit while the model lives."""
    if session.fit is not None:
        session.fit.model = None  # the record must not keep the model alive
        models.put(model, ModelRecord(session))


def record_of(model: Any) -> ModelRecord | None:
    record: ModelRecord | None = models.get(model)
    return record
