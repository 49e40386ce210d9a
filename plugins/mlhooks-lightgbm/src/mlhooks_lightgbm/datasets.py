"""Fingerprints of the data behind ``lightgbm.Dataset`` objects.

A ``Dataset`` holds its raw data until it is constructed, and drops it then unless
``free_raw_data=False``: a Dataset trained on before (or constructed by hand) has
none left. So the data is fingerprinted when the Dataset is built (a patch of
``Dataset.__init__``, outside tracked calls) and kept beside it; a Dataset built
before ``autolog()`` is fingerprinted from its data when it is trained on, if it
still has it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import PurePath
from typing import Any

import mlhooks
from mlhooks import DatasetInfo
from mlhooks.plugin import Call, CallHandler, FitSession, settings_for

FRAMEWORK = "lightgbm"

_sources: weakref.WeakKeyDictionary[Any, DatasetInfo] = weakref.WeakKeyDictionary()
"""The fingerprint of the data each live ``Dataset`` was built from."""


def fingerprint(data: Any) -> DatasetInfo | None:
    """``data``'s fingerprint; None for what has none (a file name, a LightGBM
    ``Sequence``, nothing)."""
    if data is None or isinstance(data, (str, PurePath)):
        return None
    try:
        return mlhooks.fingerprint(data)
    except TypeError:
        return None


class DatasetSource(CallHandler):
    """Fingerprints the data a ``Dataset`` is built from, for a later ``train`` or
    ``cv`` to log (the Dataset may have dropped it by then)."""

    def after(self, call: Call, result: Any) -> None:
        if not settings_for(FRAMEWORK).log_datasets:
            return
        data = call.args[0] if call.args else call.kwargs.get("data")
        info = fingerprint(data)
        if info is not None:
            _sources[call.instance] = info


def dataset_info(dataset: Any) -> DatasetInfo | None:
    """The fingerprint of what ``dataset`` (a LightGBM Dataset) was built from."""
    try:
        return _sources[dataset]
    except (KeyError, TypeError):
        return fingerprint(getattr(dataset, "data", None))


def log_datasets(
    session: FitSession,
    train_set: Any,
    valid_sets: Sequence[Any] | None = None,
    valid_names: Sequence[str] | None = None,
) -> None:
    """The training Dataset (context ``train``, named as among the validation sets,
    else ``train``) and each other validation Dataset (context ``eval``), named as
    LightGBM names their metrics: ``valid_names[i]``, else ``valid_<i>``."""
    if not session.settings.log_datasets:
        return
    if not isinstance(valid_sets, (list, tuple)):
        valid_sets = [valid_sets] if valid_sets is not None else []
    if isinstance(valid_names, str):
        valid_names = [valid_names]
    names = list(valid_names or ())
    train_name = "train"
    evals = []
    for index, dataset in enumerate(valid_sets):
        name = names[index] if index < len(names) else None
        if dataset is train_set:
            train_name = name or train_name
        else:
            evals.append((dataset, name or f"valid_{index}"))
    info = dataset_info(train_set)
    if info is not None:
        session.log_dataset(replace(info, name=train_name, context="train"))
    for dataset, name in evals:
        info = dataset_info(dataset)
        if info is not None:
            session.log_dataset(replace(info, name=name, context="eval"))


def sample_rows(data: Any, rows: int = 5) -> Any:
    """A copy of the first rows of ``data`` (a sample input for the model's
    signature); None when ``data`` cannot be sliced so."""
    if data is None or isinstance(data, (str, PurePath)):
        return None
    try:
        head = data.iloc[:rows] if hasattr(data, "iloc") else data[:rows]
        return head.copy()
    except Exception:  # noqa: BLE001 - an input we cannot slice: no sample
        return None
