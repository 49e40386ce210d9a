"""Models as real MLflow models of their flavor, written on the background writer.

What makes MLflow's own ``log_model`` slow per fit is inferring pip requirements (a
subprocess importing the model) and checking them. Here each flavor's requirements are
computed once per process from installed versions, and handed to ``save_model``, which
then skips inference.

scikit-learn models are saved with cloudpickle, as ``mlflow.sklearn.autolog()`` does:
MLflow's default, skops, refuses what a user's script defines (a ``FunctionTransformer``
of a closure, an estimator class of ``__main__``) and objects it does not know (a
compiled regular expression), and it costs seconds to import and milliseconds per model.
(MLflow 3 asks for ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` to load either format.)

A model that cannot be saved (rebuilt from its bytes in this process, or written by its
flavor) is refused for good with the reason (:class:`BackendError`, not retryable), so
that the writer sets it aside and stores everything else; only a failing disk is worth
retrying.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from mlhooks.plugin import BackendError, ModelArtifact

from . import transformers_flavor

log = logging.getLogger(__name__)

# flavor -> (MLflow module, keyword of save_model that takes the model)
FLAVORS: dict[str, tuple[str, str]] = {
    "sklearn": ("mlflow.sklearn", "sk_model"),
    "xgboost": ("mlflow.xgboost", "xgb_model"),
    "lightgbm": ("mlflow.lightgbm", "lgb_model"),
    "pytorch": ("mlflow.pytorch", "pytorch_model"),
}
# Options where MLflow's default does not suit a model captured as is. MLflow 3 saves
# PyTorch models as a traced graph ('pt2') by default, which needs an input example;
# scikit-learn models with skops (see above), LightGBM's scikit-learn API models too
# (and its list of trusted types lacks LGBMRanker, so skops refused every ranker).
SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "lightgbm": {"serialization_format": "cloudpickle"},
    "pytorch": {"serialization_format": "pickle"},
    "sklearn": {"serialization_format": "cloudpickle"},
}


IMPORTS = threading.Lock()
"""Held while a thread imports what a model needs: to save one (MLflow's flavor module,
the model's own modules as it is rebuilt) or ahead of one (:func:`prepare`). Packages
that import themselves in cycles, imported by two threads at once, can deadlock or be
seen half-initialized."""


def prepare(flavor: str, modules: Sequence[str]) -> None:
    """Import ``modules`` and, for a known ``flavor``, MLflow's module and its pip
    requirements, ahead of a model of that flavor; a module that fails is skipped."""
    with IMPORTS:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # a warm-up only: the save reports it
                log.debug("mlhooks: importing %r ahead of a model failed", name, exc_info=True)
        if flavor in FLAVORS:
            pip_requirements(flavor)


@functools.cache
def pip_requirements(flavor: str) -> tuple[str, ...]:
    """The flavor's pip requirements, pinned to what is installed; once per process.
    cloudpickle is among them where the flavor saves with it."""
    module = importlib.import_module(FLAVORS[flavor][0])
    defaults = module.get_default_pip_requirements
    if "include_cloudpickle" in inspect.signature(defaults).parameters:
        return tuple(defaults(include_cloudpickle=True))
    return tuple(defaults())


def _load_xgboost_file(path: str) -> Any:
    import xgboost

    return xgboost.Booster(model_file=path)


# flavor -> how to load a model file saved in the framework's own format (a checkpoint)
FILE_LOADERS: dict[str, Any] = {"xgboost": _load_xgboost_file}


def _model_object(artifact: ModelArtifact) -> Any:
    """The model, rebuilt from what was captured. A failing disk raises OSError (worth
    retrying); a model that cannot be rebuilt here (its code is not importable in this
    process, say a replay by ``mlhooks sync`` elsewhere) a BackendError saying so."""
    try:
        if artifact.format in ModelArtifact.PICKLED:
            if artifact.payload is None and artifact.path is not None:  # a pickled file
                with open(artifact.path, "rb") as f:
                    return pickle.load(f)
            return artifact.load()
        if artifact.path is not None:
            loader = FILE_LOADERS.get(artifact.flavor)
            return loader(artifact.path) if loader is not None else artifact.path
    except OSError:
        raise
    except Exception as error:  # whatever unpickling the user's code raises
        raise BackendError(
            f"model {artifact.name!r} cannot be rebuilt in this process to be saved as an "
            f"MLflow model ({type(error).__name__}: {error}); replay it where its code can "
            "be imported (mlhooks sync --rejected --retry)",
            retryable=False,
        ) from error
    raise BackendError(
        f"model {artifact.name!r} has no payload in a format MLflow can load", retryable=False
    )


def _signature(model: Any, example: Any) -> Any:
    """The signature of ``model`` from a sample input; inputs only when the model cannot
    predict on the sample as it is (an XGBoost Booster wants a DMatrix), None when even
    that fails or the sample is only its text (a spool written before samples were
    kept whole)."""
    from mlflow.models import infer_signature

    if isinstance(example, str):
        return None

    try:
        output = model.predict(example)
    except Exception:  # noqa: BLE001 - any model, any failure: fall back to inputs only
        output = None
    try:
        return infer_signature(example, output)
    except Exception:  # noqa: BLE001
        return None


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def save_mlflow_model(artifact: ModelArtifact, directory: str, mlflow_model: Any = None) -> str:
    """Write ``artifact`` under ``directory`` as an MLflow model; returns its folder.

    Known flavors become real MLflow models (loadable with ``mlflow.<flavor>.load_model``
    and ``mlflow.pyfunc.load_model``; a Transformers model's folder too, see
    :mod:`.transformers_flavor`); other objects are kept as ``model.pkl`` (or their
    file, or their folder's files), with their plain metadata in ``mlhooks-model.json``.
    ``mlflow_model``: the ``mlflow.models.Model`` its ``MLmodel`` file starts from (a
    logged model's id).
    """
    target = os.path.join(directory, artifact.name)
    if transformers_flavor.applies(artifact):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        transformers_flavor.save(artifact, target, mlflow_model)
        return target
    flavor = FLAVORS.get(artifact.flavor)
    if flavor is None:
        os.makedirs(target)
        if artifact.payload is not None:
            with open(os.path.join(target, "model.pkl"), "wb") as f:
                f.write(artifact.payload)
        elif artifact.path is not None and os.path.isdir(artifact.path):
            shutil.copytree(artifact.path, target, dirs_exist_ok=True)  # a model's folder
        elif artifact.path is not None:
            shutil.copy2(artifact.path, target)
        facts = {k: v for k, v in artifact.metadata.items() if _is_plain(v)}
        if facts:  # a checkpoint's monitor, score, best/last, ...
            with open(os.path.join(target, "mlhooks-model.json"), "w") as f:
                json.dump({"flavor": artifact.flavor, **facts}, f, indent=1, sort_keys=True)
        return target
    with IMPORTS:
        module = importlib.import_module(flavor[0])
        model = _model_object(artifact)
        requirements = list(pip_requirements(artifact.flavor))
    example = artifact.metadata.get("sample_input")
    options: dict[str, Any] = {"pip_requirements": requirements}
    if mlflow_model is not None:
        options["mlflow_model"] = mlflow_model
    accepted = inspect.signature(module.save_model).parameters
    options.update(
        {k: v for k, v in SAVE_OPTIONS.get(artifact.flavor, {}).items() if k in accepted}
    )
    if example is not None and artifact.metadata.get("log_signature", True):
        signature = _signature(model, example)
        if signature is not None:
            options["signature"] = signature
    if example is not None and artifact.metadata.get("log_input_example", False):
        options["input_example"] = example
    _quiet_repeats()
    try:
        _saving.active = True
        module.save_model(**{flavor[1]: model}, path=target, **options)
    except OSError:
        raise  # a full or failing disk: worth retrying
    except Exception as error:  # the model, not the store: never worth retrying
        raise BackendError(
            f"MLflow cannot save model {artifact.name!r} ({artifact.flavor} flavor, a "
            f"{artifact.metadata.get('class', type(model).__name__)}): "
            f"{type(error).__name__}: {error}",
            retryable=False,
        ) from error
    finally:
        _saving.active = False
    return target


_saving = threading.local()
"""``active`` while this thread saves a model for mlhooks."""


class _SayOnce(logging.Filter):
    """MLflow's caution about pickle formats, logged for every scikit-learn, LightGBM or
    PyTorch model saved, said once per process for the models mlhooks saves (the saves of
    others keep theirs)."""

    def __init__(self) -> None:
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_saving, "active", False) or "exercising caution" not in str(record.msg):
            return True
        said, self.said = self.said, True
        return not said


_SAY_ONCE = {name: _SayOnce() for name in ("mlflow.sklearn", "mlflow.pytorch", "mlflow.lightgbm")}


def _quiet_repeats() -> None:
    for name, once in _SAY_ONCE.items():
        logging.getLogger(name).addFilter(once)  # added once: a logger's filters are a set
    _skip_our_requirement_checks()


def _skip_our_requirement_checks() -> None:
    """On every save, MLflow checks the model's requirements against this environment
    (``warn_dependency_requirement_mismatches``: several milliseconds per model, mapping
    every installed distribution to its modules), to warn about a mismatch. The
    requirements mlhooks gives are MLflow's defaults pinned to what is installed here
    (:func:`pip_requirements`): nothing to find. Skipped for mlhooks' own saves; other
    saves keep the check. (A wrapper of MLflow's module attribute, once per process;
    where MLflow has no such function, nothing is changed.)"""
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None or getattr(check, "_mlhooks_skips_own", False):
        return

    @functools.wraps(check)
    def checked_unless_ours(*args: Any, **kwargs: Any) -> Any:
        if getattr(_saving, "active", False):
            return None
        return check(*args, **kwargs)

    checked_unless_ours._mlhooks_skips_own = True  # type: ignore[attr-defined]
    setattr(environment, "warn_dependency_requirement_mismatches", checked_unless_ours)  # noqa: B010


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="mlhooks-mlflow-model-")
