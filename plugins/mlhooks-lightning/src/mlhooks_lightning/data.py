"""Fingerprints of the datasets behind Lightning's dataloaders, in O(1) of their
length: the length, the shapes and dtypes of one element, and a digest over a bounded,
evenly spaced sample of elements."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mlhooks import DatasetInfo

SAMPLE = 16
"""Elements hashed per dataset at most."""


def _leaves(element: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(element, Mapping):
        out: list[tuple[str, Any]] = []
        for key, value in element.items():
            out.extend(_leaves(value, f"{prefix}{key}."))
        return out
    if isinstance(element, (tuple, list)):
        out = []
        for index, value in enumerate(element):
            out.extend(_leaves(value, f"{prefix}{index}."))
        return out
    return [(prefix.rstrip(".") or "0", element)]


def _describe(value: Any) -> tuple[str, bytes]:
    """(dtype and shape, bytes to hash) of one leaf."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        array = value.detach().cpu().contiguous()
        dtype = str(array.dtype).replace("torch.", "")
        return f"{dtype}{list(array.shape)}", array.numpy().tobytes()
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):  # a numpy array or scalar
        return f"{value.dtype}{list(getattr(value, 'shape', ()))}", value.tobytes()
    return type(value).__name__, repr(value).encode()


def fingerprint(dataset: Any, name: str, context: str) -> DatasetInfo | None:
    """A :class:`DatasetInfo` for a map-style dataset; None when it has no length."""
    try:
        length = len(dataset)
    except TypeError:
        return None
    hasher = hashlib.sha256(f"{type(dataset).__qualname__}:{length}".encode())
    schema: dict[str, str] = {}
    count = min(length, SAMPLE)
    for position in range(count):
        index = position * length // count
        for key, value in _leaves(dataset[index]):
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
        kind=f"torch:{type(dataset).__name__}",
    )


def datasets_of(loaders: Any) -> list[Any]:
    """The datasets behind a dataloader, a list or a dict of them."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    return [loader.dataset for loader in loaders if hasattr(loader, "dataset")]
