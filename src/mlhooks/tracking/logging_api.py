"""Manual logging on the active run, with MLflow's familiar names.

Without an active run, the first call starts one (as MLflow does); it ends at exit or
with ``mlhooks.end_run()``. Bad input raises ValueError naming the key and the reason.
Every call only enqueues: the writing happens on the background writer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from time import time_ns
from typing import Any

from mlhooks.capture import datasets, models
from mlhooks.core import validation
from mlhooks.core.errors import report_internal_error
from mlhooks.core.host import host
from mlhooks.core.types import RunInfo, now_ms
from mlhooks.core.validation import INT64_MAX, INT64_MIN, checked_keys, clean_metrics
from mlhooks.delivery import staging
from mlhooks.delivery.recorder import recorder
from mlhooks.tracking.runs import active_run, current_run, new_params, start_run
from mlhooks.tracking.runs import thread_local as run_stack

__all__ = [
    "flush",
    "log_artifact",
    "log_artifacts",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
]


def _run() -> RunInfo:
    """The run to log into; one is started when there is none (as MLflow does)."""
    run = current_run()
    if run is None:
        run = start_run().info
    return run


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Log one metric point. NaN and infinities are valid values and stored as such."""
    # The hot path of manual logging: each check is inlined for the common case.
    stack = getattr(run_stack, "stack", None)
    run = stack[-1] if stack else _run()
    if type(key) is not str or key not in checked_keys:
        key = validation.check_key(key, "metric", strict=True)
    if type(value) is not float:
        value = validation.metric_value(key, value, strict=True)  # type: ignore[assignment]
    if type(step) is not int or not INT64_MIN <= step <= INT64_MAX:
        step = 0 if step is None else validation.step_value(step, strict=True)
    if timestamp is None:
        stamp = time_ns() // 1_000_000
    else:
        stamp = validation.timestamp_value(timestamp, strict=True)  # type: ignore[assignment]
    for site, call in host.calls("on_metrics"):  # host.emit, inlined for speed
        try:
            call(run, {key: value}, step, stamp)
        except Exception as error:  # noqa: BLE001 - isolate every listener
            report_internal_error(site, error)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    """Log several metrics at one step."""
    run = active_run() or _run()
    clean = clean_metrics(metrics, strict=True)
    host.emit(
        "on_metrics",
        run,
        clean,
        0 if step is None else validation.step_value(step, strict=True),
        now_ms() if timestamp is None else validation.timestamp_value(timestamp, strict=True),
    )


def log_param(key: str, value: Any) -> None:
    """Log one param. Logging it again with another value raises ValueError."""
    log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params (values are stored as strings)."""
    run = _run()
    clean = validation.clean_entries(params, "param", strict=True)
    fresh = new_params(run, clean, strict=True)
    if fresh:
        host.emit("on_params", run, fresh)


def set_tag(key: str, value: Any) -> None:
    """Set one tag (a later value replaces an earlier one)."""
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    run = _run()
    host.emit("on_tags", run, validation.clean_entries(tags, "tag", strict=True))


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Keep a file with the run, under ``artifact_path`` if given. A snapshot is taken
    now, so changing or deleting the file afterwards does not change what is stored."""
    artifact_path = validation.check_artifact_path(artifact_path, strict=True)
    if not os.path.isfile(local_path):
        raise ValueError(f"log_artifact needs an existing file, and {str(local_path)!r} is not")
    run = _run()
    host.emit("on_artifact", run, staging.stage_or_keep(local_path), artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Keep every file under ``local_dir`` with the run, under ``artifact_path``."""
    artifact_path = validation.check_artifact_path(artifact_path, strict=True)
    if not os.path.isdir(local_dir):
        raise ValueError(
            f"log_artifacts needs an existing directory, and {str(local_dir)!r} is not"
        )
    run = _run()
    host.emit("on_artifact", run, staging.stage_or_keep(local_dir), artifact_path)


def log_dataset(
    data: Any, name: str | None = None, context: str = "train", source: str | None = None
) -> None:
    """Log a fingerprint of ``data`` (array, DataFrame, Series, sparse matrix or list)."""
    run = _run()
    info = datasets.fingerprint(data, name=name, context=context, source=source)
    host.emit("on_dataset", run, info)


def log_model(model: Any, name: str = "model", flavor: str | None = None, **metadata: Any) -> None:
    """Log ``model`` as it is now (a later refit does not change what is stored)."""
    run = _run()
    validation.check_key(name, "model name", strict=True)
    host.emit("on_model_saved", run, models.capture(model, name, flavor=flavor, **metadata))


def flush(timeout: float | None = None) -> bool:
    """Wait until everything logged so far is stored (or spooled, when a backend is
    down). Returns False when ``timeout`` seconds passed first."""
    return recorder.flush(timeout)
