"""The mlhooks contract: every hook a plugin may implement.

Plugins are plain objects or modules whose functions carry ``@mlhooks.hookimpl``. They are
found through the ``mlhooks`` entry-point group or registered with ``mlhooks.register``.

There are two kinds of hooks:

* **Registration hooks** run once when plugins load. A plugin offers a framework
  integration or a storage backend by calling the ``register`` callback it is given.
* **Event hooks** run while training. Framework integrations *report* events by calling
  them (through :class:`mlhooks.plugin.FitSession` or the ``mlhooks.log_*`` functions); the
  built-in recorder *stores* them by turning them into backend operations; any other
  plugin may listen (an alert on a diverging loss, a progress printer).

Event hooks run on the training thread: implementations must be quick and must not
raise. If one does raise, mlhooks warns once and training goes on (``MLHOOKS_STRICT=1``
re-raises).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from mlhooks.core.types import DatasetInfo, Fit, ModelArtifact, RunInfo, RunStatus

if TYPE_CHECKING:
    from mlhooks.autologging.integration import Integration
    from mlhooks.backends.base import BackendFactory

PROJECT = "mlhooks"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration hooks ------------------------------------------------------------------


@hookspec
def register_integrations(register: Callable[[Integration], None]) -> None:
    """Offer framework integrations: call ``register(MyIntegration())`` for each.

    An integration names the module it patches and the versions it supports; the core
    patches it when that module is imported and ``autolog()`` is on.
    """


@hookspec
def register_backends(register: Callable[[str, BackendFactory], None]) -> None:
    """Offer storage backends: call ``register("name", factory)`` for each.

    ``factory(**options)`` returns a :class:`mlhooks.plugin.Backend`. Users select backends by
    name (``autolog(backends=["name"])``, ``MLHOOKS_BACKENDS=name``).
    """


@hookspec(firstresult=True)
def find_active_run() -> RunInfo | None:
    """A run opened outside mlhooks that tracking should go into, or None.

    The MLflow plugin returns the run of ``mlflow.start_run()`` here, so that fits and
    ``mlhooks.log_*`` calls inside it log into it. Return the same object for the same
    outside run each time, with ``backend_ids`` naming it for your backend. mlhooks
    never ends such a run; it is consulted only when no mlhooks run is active.
    """


# -- event hooks ---------------------------------------------------------------------------


@hookspec
def on_run_start(run: RunInfo) -> None:
    """A run has started: opened by the user or by mlhooks for a fit (``run.managed``).

    ``run.parent_id`` is set for nested runs (hyper-parameter search candidates).
    """


@hookspec
def on_run_end(run: RunInfo, status: RunStatus) -> None:
    """A run has ended with ``status``. Everything reported for it came before this call."""


@hookspec
def on_fit_start(fit: Fit) -> None:
    """A tracked training call is about to run. ``fit.params`` and ``fit.tags`` are final."""


@hookspec
def on_epoch_end(fit: Fit, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
    """An epoch (or boosting round) ended with these epoch-level ``metrics``.

    ``step`` is where the values are stored: usually ``epoch``, or the global step when
    the integration is configured so. The same values were reported through
    ``on_metrics`` just before, so a listener that watches metrics needs only that hook;
    ``metrics`` may be empty (a round without eval sets), and other values may have been
    stored at the same step before (a ``partial_fit`` batch's training metrics).

    Every framework integration reports its training's iterations here, between the
    fit's ``on_fit_start`` and ``on_fit_end``, with ``epoch`` and ``step`` increasing:

    * Lightning: each training epoch, as it ends.
    * XGBoost: each boosting round of ``xgboost.train``, ``xgboost.cv`` and the
      scikit-learn API, as it ends (every ``log_every_n_steps`` rounds and the last,
      when that option is set).
    * LightGBM: each boosting iteration of ``lightgbm.train``, ``lightgbm.cv`` and the
      scikit-learn API, as it ends (likewise with ``log_every_n_steps``).
    * Transformers: each epoch of ``Trainer.train``, as it ends (no values: the
      Trainer's logs are reported through ``on_metrics`` at their own steps), ``step``
      the optimizer step it ended at.
    * scikit-learn: each ``partial_fit`` call, a step of its estimator's loop (one
      event per call, in the loop's run). Curves an estimator records during ``fit``
      (MLP's ``loss_curve_``, gradient boosting's ``train_score_``, ...) are readable
      only once ``fit`` returned: each of their iterations is reported then, in order
      and before ``on_fit_end``, so that listeners see every iteration of every
      framework, late rather than never. A listener that must act while training runs
      cannot do so for these.
    """


@hookspec
def on_fit_end(fit: Fit) -> None:
    """A tracked training call returned (or raised: ``fit.error`` is then set)."""


@hookspec
def on_params(run: RunInfo, params: Mapping[str, Any]) -> None:
    """Parameters of ``run``: hyper-parameters, settings, anything fixed for the run."""


@hookspec
def on_tags(run: RunInfo, tags: Mapping[str, str]) -> None:
    """Tags to set (or overwrite) on ``run``."""


@hookspec
def on_metrics(run: RunInfo, metrics: Mapping[str, float], step: int, timestamp: int) -> None:
    """Metric values observed at ``step`` (timestamp in ms): every metric point that is
    stored goes through here (per step, per epoch, final, manual).

    This is the hot path (called once per training step at most); keep it cheap.
    """


@hookspec
def on_dataset(run: RunInfo, dataset: DatasetInfo) -> None:
    """A dataset fingerprint: what the model was trained (``context="train"``) or
    evaluated (``"eval"``) on."""


@hookspec
def on_model_saved(run: RunInfo, model: ModelArtifact) -> None:
    """A model or checkpoint was saved. ``model.payload`` or ``model.path`` (a file, or a
    folder when ``model.format`` is ``directory``) holds it, captured when this was
    called."""


@hookspec
def on_artifact(run: RunInfo, local_path: str, artifact_path: str | None) -> None:
    """A file or directory to keep with the run.

    A file is stored as ``<artifact_path>/<file name>``; a directory's *contents* are
    stored under ``artifact_path`` (the run's artifact root when None), as MLflow's
    ``log_artifact`` and ``log_artifacts`` do. ``local_path`` is a snapshot the core
    took when the artifact was reported.
    """
