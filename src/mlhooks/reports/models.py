"""Models back from any backend that stores them: ``load_model`` and ``search_models``.

A backend offers them by implementing ``load_model(run_id, name)`` and
``search_models(experiment, filter_string, order_by)`` (the local, memory and MLflow
stores do both, W&B the first); one that stores no models (TensorBoard) is named as
such. Rows of ``search_models`` name their run as ``search_runs`` does
(``run_id``), so that the two join: ``runs.merge(models, on="run_id")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlhooks.backends.base import Backend
from mlhooks.core.types import Capability, RunData, RunInfo
from mlhooks.delivery import selection
from mlhooks.reports.search import searchable


def load_model(run: Any, name: str = "model", backend: str | Backend | None = None) -> Any:
    """The model ``name`` stored with ``run``, loaded back as the object it was.

    Args:
        run: a run id (mlhooks' or, with MLflow, MLflow's), or what ``start_run``
            returned (an ``ActiveRun``, a ``RunInfo``, a ``RunData``).
        name: the model's name in the run: ``"model"`` for a fit's model, a
            checkpoint's name such as ``"checkpoints/epoch=2-step=30"``.
        backend: a backend name or object; the default backend when None.

    A model of a flavor MLflow knows comes back as that framework's object (with
    MLflow, a Transformers model with a tokenizer as its pipeline); any other as it was
    pickled; a checkpoint kept as a file, or a model kept as a folder (a Transformers
    ``save_pretrained`` one), as the ``pathlib.Path`` of it (a copy, for MLflow). Of a
    name stored several times in a run (a checkpoint saved every epoch under one name),
    the latest step's. Raises ``KeyError`` when the run
    has no such model, ``ValueError`` when the backend stores no models.
    """
    target = searchable(_model_store(backend, "load models"), "load_model")
    return target.load_model(_run_id(run), name)  # type: ignore[attr-defined]


def search_models(
    experiment: str | None = None,
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    backend: str | Backend | None = None,
) -> Any:
    """Stored models as a pandas DataFrame, one row each.

    Columns: ``model_id`` (MLflow 3's logged model id; None in stores without one),
    ``name``, ``run_id`` (as ``search_runs`` names the run), ``experiment_id``,
    ``flavor``, ``step`` (a checkpoint's; None for the model of a whole fit),
    ``status``, ``creation_time``, ``metrics.<key>`` (the values linked to the model:
    the run's final ones, a checkpoint's of its step), ``params.<key>`` (the run's)
    and ``tags.<key>``.

    Args:
        experiment: only models of this experiment (by name); all when None.
        filter_string: MLflow's filter syntax over those columns, e.g.
            ``"metrics.val_loss < 0.5 and flavor = 'sklearn'"`` (with MLflow, its
            logged model search: ``name``, ``status``, ``source_run_id``, metrics,
            params and tags).
        order_by: e.g. ``["metrics.val_loss ASC"]``.
        backend: a backend name or object; the default backend when None.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("mlhooks.search_models returns a DataFrame: pip install pandas") from None
    target = searchable(_model_store(backend, "search models"), "search_models")
    rows = target.search_models(  # type: ignore[attr-defined]
        experiment=experiment, filter_string=filter_string or "", order_by=list(order_by or [])
    )
    return pd.DataFrame(rows)


def _model_store(backend: str | Backend | None, what: str) -> Backend:
    """The backend named; ValueError saying so when it stores no models at all (the
    TensorBoard backend keeps metrics, params, tags and images)."""
    target = selection.resolve(backend)[0]
    if not target.supports(Capability.MODELS):
        kept = ", ".join(c.value for c in Capability if target.supports(c)) or "nothing"
        raise ValueError(
            f"backend {target.name!r} cannot {what}: it stores no models (only {kept}). "
            "Log to a backend that stores models as well (autolog(backends=[..., 'local']) "
            "or 'mlflow') and read them from it: mlhooks.load_model(run, backend='local')"
        )
    return target


def _run_id(run: Any) -> str:
    if isinstance(run, str):
        return run
    if isinstance(run, RunData):
        return run.info.run_id
    if isinstance(run, RunInfo) or hasattr(run, "run_id"):
        return str(run.run_id)
    raise TypeError(f"load_model takes a run id or a run, not {type(run).__name__}")
