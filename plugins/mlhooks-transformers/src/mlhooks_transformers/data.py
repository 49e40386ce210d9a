"""Fingerprints of the datasets a training reads, in O(1) of their length: the length,
the dtypes and shapes of an element's fields, and a digest over a bounded, evenly
spaced sample of elements (map-style datasets: a torch ``Dataset``, a Hugging Face
``datasets.Dataset``, a list)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mlhooks import DatasetInfo
from mlhooks.plugin import FitSession

SAMPLE = 16
"""Elements hashed per dataset at most."""


def _fields(element: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(element, Mapping):
        found: list[tuple[str, Any]] = []
        for key, value in element.items():
            found.extend(_fields(value, f"{prefix}{key}."))
        return found
    if isinstance(element, tuple):
        found = []
        for index, value in enumerate(element):
            found.extend(_fields(value, f"{prefix}{index}."))
        return found
    return [(prefix.rstrip(".") or "0", element)]


def _describe(value: Any) -> tuple[str, bytes]:
    """(dtype and shape, bytes to hash) of one field."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        tensor = value.detach().cpu().contiguous()
        return f"{str(tensor.dtype).replace('torch.', '')}{list(tensor.shape)}", (
            tensor.numpy().tobytes()
        )
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):  # a numpy array or scalar
        return f"{value.dtype}{list(getattr(value, 'shape', ()))}", value.tobytes()
    if isinstance(value, list):
        return f"list[{len(value)}]", repr(value).encode()
    return type(value).__name__, repr(value).encode()


def fingerprint(dataset: Any, name: str, context: str) -> DatasetInfo | None:
    """A :class:`DatasetInfo` of a map-style dataset; None when it has no length or
    cannot be indexed (an iterable dataset)."""
    try:
        length = len(dataset)
        first = dataset[0] if length else None
    except (TypeError, KeyError, IndexError, NotImplementedError):
        return None
    hasher = hashlib.sha256(f"{type(dataset).__qualname__}:{length}".encode())
    schema: dict[str, str] = {}
    count = min(length, SAMPLE)
    for position in range(count):
        index = position * length // count
        for key, value in _fields(first if index == 0 else dataset[index]):
            described, payload = _describe(value)
            schema.setdefault(key, described)
            hasher.update(key.encode())
            hasher.update(payload)
    return DatasetInfo(
        name=name,
        digest=hasher.hexdigest()[:16],
        context=context,
        shape=(length,),
        schema=schema or None,
        kind=f"{type(dataset).__module__.split('.')[0]}:{type(dataset).__name__}",
    )


class Datasets:
    """The datasets one training logged: the training set once, each evaluation set
    once (``eval``, then ``eval_1``, ... for others, as several evaluation sets give)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._evaluated = 0

    def log(self, session: FitSession, loader: Any, context: str) -> None:
        """The dataset behind ``loader`` (a DataLoader), the first time it is seen."""
        if loader is None or not session.settings.log_datasets:
            return
        dataset = getattr(loader, "dataset", None)
        if dataset is None or id(dataset) in self._seen:
            return
        self._seen.add(id(dataset))
        if context == "train":
            name = "train"
        else:
            name = "eval" if self._evaluated == 0 else f"eval_{self._evaluated}"
            self._evaluated += 1
        info = fingerprint(dataset, name, context)
        if info is not None:
            session.log_dataset(info)
