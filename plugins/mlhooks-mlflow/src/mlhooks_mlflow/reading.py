"""Models read back from MLflow: one loaded by run and name (``mlhooks.load_model``),
and the logged models as rows (``mlhooks.search_models``).

A model is found as the backend stored it: with MLflow 3, the logged model of the run
whose tag ``mlhooks.model_name`` (or, for one MLflow logged itself, whose name) is the
name asked for; otherwise among the run's artifacts (MLflow 2, or a model stored
before the upgrade). It is downloaded, then loaded by the first flavor of its
``MLmodel`` that MLflow has a module for; a pickled object of no flavor is unpickled,
and a model kept as a file (a checkpoint) comes back as the path of its copy.
"""

from __future__ import annotations

import importlib
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow

from .logged_models import FLAVOR_TAG, MODEL_NAME_TAG, READY, STEP_TAG, logged_name


def find_logged_model(client: Any, mlflow_id: str, name: str) -> Any:
    """The READY logged model ``name`` of run ``mlflow_id`` (the latest step's, then the
    newest), or None."""
    experiment_id = client.get_run(mlflow_id).info.experiment_id
    candidates = [
        model
        for model in _every_model(
            client,
            [experiment_id],
            f"source_run_id = '{mlflow_id}' AND name = '{logged_name(name)}'",
            None,
        )
        if model.status == READY and model.tags.get(MODEL_NAME_TAG, model.name) == name
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda m: (_step(m) or 0, m.creation_timestamp))


def load_from(uri: str, tracking_uri: str) -> Any:
    """The model at ``uri`` (a logged model's artifact location, or
    ``runs:/<run>/<name>``) of the store at ``tracking_uri``, loaded."""
    return load_with(
        lambda folder: mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri
        )
    )


def load_with(download: Callable[[str], str]) -> Any:
    """The model ``download(folder)`` puts into a new temporary folder (returning its
    local path), loaded."""
    folder = Path(tempfile.mkdtemp(prefix="mlhooks-model-"))
    keep = False
    try:
        local = Path(download(str(folder)))
        if (local / "MLmodel").is_file():
            return _load_flavor(local)
        if (local / "model.pkl").is_file():
            return pickle.loads((local / "model.pkl").read_bytes())
        files = [p for p in local.iterdir() if p.name != "mlhooks-model.json"]
        keep = True  # the caller gets a path into it
        return files[0] if len(files) == 1 else local
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _load_flavor(local: Path) -> Any:
    from mlflow.models import Model

    flavors = [f for f in Model.load(str(local / "MLmodel")).flavors if f != "python_function"]
    for flavor in flavors:
        try:
            module = importlib.import_module(f"mlflow.{flavor}")
        except ImportError:
            continue
        return module.load_model(str(local))
    return mlflow.pyfunc.load_model(str(local))


def model_rows(
    client: Any, experiment_ids: list[str], filter_string: str, order_by: list[str]
) -> list[dict[str, Any]]:
    """The logged models of the experiments as rows (see :mod:`mlhooks.reports.models`)."""
    order = [_order_term(term) for term in order_by] or None
    return [
        _row(model) for model in _every_model(client, experiment_ids, filter_string or None, order)
    ]


def _row(model: Any) -> dict[str, Any]:
    tags = model.tags
    row: dict[str, Any] = {
        "model_id": model.model_id,
        "name": tags.get(MODEL_NAME_TAG, model.name),
        "run_id": model.source_run_id,
        "experiment_id": model.experiment_id,
        "flavor": tags.get(FLAVOR_TAG),
        "step": _step(model),
        "status": str(model.status),
        "creation_time": model.creation_timestamp,
    }
    latest: dict[str, Any] = {}
    for metric in model.metrics or []:
        known = latest.get(metric.key)
        if known is None or (metric.step, metric.timestamp) >= (known.step, known.timestamp):
            latest[metric.key] = metric
    row.update({f"metrics.{k}": m.value for k, m in latest.items()})
    row.update({f"params.{k}": v for k, v in (model.params or {}).items()})
    row.update({f"tags.{k}": v for k, v in tags.items()})
    return row


def _step(model: Any) -> int | None:
    step = model.tags.get(STEP_TAG)
    return int(step) if step is not None and step.lstrip("-").isdigit() else None


def _order_term(term: str) -> dict[str, Any]:
    """``"metrics.loss DESC"`` as MLflow's logged model search takes it."""
    parts = term.split()
    field = parts[0].strip("`\"'")
    ascending = len(parts) < 2 or parts[1].upper() != "DESC"
    return {"field_name": field, "ascending": ascending}


def _every_model(
    client: Any, experiment_ids: list[str], filter_string: str | None, order: Any
) -> list[Any]:
    found: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_logged_models(
            experiment_ids, filter_string=filter_string, order_by=order, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found
