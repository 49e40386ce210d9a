"""Models as real MLflow models of their flavor, written on the background writer.

What makes MLflow's own ``log_model`` slow per fit is inferring pip requirements (a
subprocess importing the model) and checking them. Here each flavor's requirements are
computed once per process from installed versions, and handed to ``save_model``, which
then skips inference.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pickle
import shutil
import tempfile
from typing import Any

from mlhooks.plugin import ModelArtifact

# flavor -> (MLflow module, keyword of save_model that takes the model)
FLAVORS: dict[str, tuple[str, str]] = {
    "sklearn": ("mlflow.sklearn", "sk_model"),
    "xgboost": ("mlflow.xgboost", "xgb_model"),
    "lightgbm": ("mlflow.lightgbm", "lgb_model"),
    "pytorch": ("mlflow.pytorch", "pytorch_model"),
}
# Options where MLflow's default does not suit a model captured as is. MLflow 3 saves
# PyTorch models as a traced graph ('pt2') by default, which needs an input example.
SAVE_OPTIONS: dict[str, dict[str, Any]] = {"pytorch": {"serialization_format": "pickle"}}


@functools.cache
def pip_requirements(flavor: str) -> tuple[str, ...]:
    """The flavor's pip requirements, pinned to what is installed; once per process."""
    module = importlib.import_module(FLAVORS[flavor][0])
    return tuple(module.get_default_pip_requirements())


def _load_xgboost_file(path: str) -> Any:
    import xgboost

    return xgboost.Booster(model_file=path)


# flavor -> how to load a model file saved in the framework's own format (a checkpoint)
FILE_LOADERS: dict[str, Any] = {"xgboost": _load_xgboost_file}


def _model_object(artifact: ModelArtifact) -> Any:
    if artifact.format == "pickle":
        if artifact.payload is None and artifact.path is not None:  # a pickled file
            with open(artifact.path, "rb") as f:
                return pickle.load(f)
        return artifact.load()
    if artifact.path is not None:
        loader = FILE_LOADERS.get(artifact.flavor)
        return loader(artifact.path) if loader is not None else artifact.path
    raise ValueError(f"model {artifact.name!r} has no payload in a format MLflow can load")


def _signature(model: Any, example: Any) -> Any:
    """The signature of ``model`` from a sample input; inputs only when the model cannot
    predict on the sample as it is (an XGBoost Booster wants a DMatrix), None when even
    that fails."""
    from mlflow.models import infer_signature

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


def save_mlflow_model(artifact: ModelArtifact, directory: str) -> str:
    """Write ``artifact`` under ``directory`` as an MLflow model; returns its folder.

    Known flavors become real MLflow models (loadable with ``mlflow.<flavor>.load_model``
    and ``mlflow.pyfunc.load_model``); other objects are kept as ``model.pkl`` (or their
    file), with their plain metadata in ``mlhooks-model.json``.
    """
    target = os.path.join(directory, artifact.name)
    flavor = FLAVORS.get(artifact.flavor)
    if flavor is None:
        os.makedirs(target)
        if artifact.payload is not None:
            with open(os.path.join(target, "model.pkl"), "wb") as f:
                f.write(artifact.payload)
        elif artifact.path is not None:
            shutil.copy2(artifact.path, target)
        facts = {k: v for k, v in artifact.metadata.items() if _is_plain(v)}
        if facts:  # a checkpoint's monitor, score, best/last, ...
            with open(os.path.join(target, "mlhooks-model.json"), "w") as f:
                json.dump({"flavor": artifact.flavor, **facts}, f, indent=1, sort_keys=True)
        return target
    module = importlib.import_module(flavor[0])
    model = _model_object(artifact)
    example = artifact.metadata.get("sample_input")
    options: dict[str, Any] = {"pip_requirements": list(pip_requirements(artifact.flavor))}
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
    try:
        module.save_model(**{flavor[1]: model}, path=target, **options)
    except Exception as error:
        trusted = _skops_types_to_trust(model, error) if "skops_trusted_types" in accepted else None
        if not trusted:
            raise
        # MLflow saves sklearn models with skops, which refuses types it does not know
        # (HistGradientBoosting's TreePredictor) unless told to trust them. This model
        # was captured from the user's own process, so its types are the user's own.
        shutil.rmtree(target, ignore_errors=True)
        module.save_model(**{flavor[1]: model}, path=target, skops_trusted_types=trusted, **options)
    return target


def _skops_types_to_trust(model: Any, error: Exception) -> list[str] | None:
    """The types skops would refuse in ``model``, when that is why saving failed."""
    if "untrusted types" not in str(error).lower():
        return None
    try:
        import skops.io

        return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    except Exception:  # noqa: BLE001 - then the original error stands
        return None


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="mlhooks-mlflow-model-")
