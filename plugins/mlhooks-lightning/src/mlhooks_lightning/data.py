"""The datasets of a Trainer call: those behind the dataloaders of each stage, logged
once per call, as fingerprints in O(1) of their length: the length, the shapes and
dtypes of one element, and a digest over a bounded, evenly spaced sample of elements."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mlhooks import DatasetInfo
from mlhooks.plugin import FitSession

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


class Datasets:
    """The datasets one Trainer call logged, by stage."""

    def __init__(self) -> None:
        self.logged: set[str] = set()

    def reset(self) -> None:
        """A new Trainer call: nothing logged yet."""
        self.logged = set()

    def log(self, session: FitSession, trainer: Any, stage: str) -> None:
        """Fingerprints of the datasets of ``stage`` (train, val or test), once per call."""
        if stage in self.logged or not session.settings.log_datasets:
            return
        self.logged.add(stage)
        loaders = {
            "train": lambda: trainer.train_dataloader,
            "fit": lambda: trainer.train_dataloader,
            "val": lambda: trainer.val_dataloaders,
            "test": lambda: trainer.test_dataloaders,
        }[stage]()
        found = datasets_of(loaders)
        name = "train" if stage == "fit" else stage
        for index, dataset in enumerate(found):
            label = name if len(found) == 1 else f"{name}_{index}"
            context = "train" if name == "train" else "eval"
            info = fingerprint(dataset, label, context)
            if info is not None:
                session.log_dataset(info)
