"""Hugging Face Transformers models as MLflow ``transformers`` models, saved on the
writer (in the writer service when it runs), from the folder the training process
wrote: MLflow is never imported there for them.

The Transformers plugin reports its final model as a :class:`ModelArtifact` of flavor
``transformers`` and format ``directory``: a ``save_pretrained`` folder (the weights,
the config, the processing class's files beside them), with the pipeline task as its
``task`` fact and its class as ``class``. Here that folder becomes:

* with a tokenizer among its files and a task, an MLflow ``transformers`` model
  (``mlflow.transformers.load_model`` gives a pipeline, ``mlflow.pyfunc`` serves it),
  saved without downloads: MLflow is given a model card, the model and tokenizer
  loaded from the local folder (so that it looks up no Hub name) and the pip
  requirements, pinned to what is installed;
* otherwise, or when MLflow cannot save it (one notice says why), the folder itself,
  which ``AutoModelFor....from_pretrained`` loads, with the model's facts in
  ``mlhooks-model.json``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import importlib.metadata
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlhooks.plugin import BackendError, ModelArtifact, notice_once

FLAVOR = "transformers"
CARD = """---
library_name: transformers
tags:
- mlhooks
---
A model trained with the Hugging Face Trainer, logged by mlhooks.
"""
REQUIREMENTS = ("transformers", "torch", "accelerate", "tokenizers", "safetensors")
"""What loading the model needs (MLflow's own default guesses, and asks for torchvision)."""
TOKENIZER_FILE = "tokenizer_config.json"
"""What ``save_pretrained`` of a tokenizer always writes."""
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
"""A failing disk: worth retrying, unlike whatever else the model's saving raises."""


def applies(artifact: ModelArtifact) -> bool:
    """Whether ``artifact`` is a Transformers model folder this module saves."""
    return artifact.flavor == FLAVOR and artifact.format == ModelArtifact.DIRECTORY


def save(artifact: ModelArtifact, target: str, mlflow_model: Any = None) -> None:
    """Write ``artifact`` into the new folder ``target``: an MLflow ``transformers``
    model, else its own folder (see the module). ``mlflow_model``: the
    ``mlflow.models.Model`` its ``MLmodel`` starts from (a logged model's id)."""
    folder = Path(artifact.path or "")
    if not artifact.path or not folder.is_dir():
        raise BackendError(
            f"model {artifact.name!r} has no folder to store (gone from {artifact.path!r})",
            retryable=False,
        )
    why_not = _mlflow_model(artifact, folder, target, mlflow_model)
    if why_not is None:
        return
    if why_not:
        notice_once(
            f"mlflow-transformers-flavor:{why_not}",
            f"mlhooks: model {artifact.name!r} is stored as its save_pretrained folder: "
            f"MLflow's transformers flavor could not save it ({why_not})",
        )
    shutil.rmtree(target, ignore_errors=True)  # what MLflow left of a failed save
    shutil.copytree(folder, target)
    facts = {k: v for k, v in artifact.metadata.items() if _is_plain(v)}
    with open(Path(target) / "mlhooks-model.json", "w") as f:
        json.dump({"flavor": artifact.flavor, **facts}, f, indent=1, sort_keys=True)


def _mlflow_model(
    artifact: ModelArtifact, folder: Path, target: str, mlflow_model: Any
) -> str | None:
    """Save ``folder`` as an MLflow transformers model at ``target``: None when saved,
    "" when the flavor does not apply (no task, no tokenizer, no MLflow flavor), else
    why MLflow could not save it. A failing disk raises its OSError."""
    task = artifact.metadata.get("task")
    if not isinstance(task, str) or not task or not (folder / TOKENIZER_FILE).is_file():
        return ""
    try:
        import mlflow.transformers
        import transformers
        from huggingface_hub import ModelCard
    except ImportError:
        return ""
    try:
        with _quiet_progress_bars(transformers):
            model_class = _model_class(transformers, artifact, folder)
            model = model_class.from_pretrained(folder, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # any model, any Transformers version
        if _is_disk_error(error):
            raise
        return f"{type(error).__name__}: {error}"
    options: dict[str, Any] = {"pip_requirements": list(requirements())}
    if mlflow_model is not None:
        options["mlflow_model"] = mlflow_model
    try:
        with _quiet_progress_bars(transformers):
            mlflow.transformers.save_model(
                transformers_model={"model": model, "tokenizer": tokenizer},
                path=target,
                task=task,
                model_card=ModelCard(CARD),
                **options,
            )
    except Exception as error:  # any model, any MLflow version
        if _is_disk_error(error):
            raise
        return f"{type(error).__name__}: {error}"
    return None


def _model_class(transformers: Any, artifact: ModelArtifact, folder: Path) -> Any:
    """The model's class: the one it was trained as, when it can be imported here,
    else the first architecture of its config that Transformers has."""
    name = artifact.metadata.get("class")
    if isinstance(name, str) and "." in name:
        module, _, qualname = name.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):
            found = getattr(importlib.import_module(module), qualname)
            if isinstance(found, type):
                return found
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    for architecture in getattr(config, "architectures", None) or []:
        found = getattr(transformers, architecture, None)
        if isinstance(found, type):
            return found
    raise LookupError(f"its class {name!r} cannot be imported by the writer")


@functools.cache
def requirements() -> tuple[str, ...]:
    """The installed versions of :data:`REQUIREMENTS`, once per process."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pinned.append(f"{name}=={version.split('+')[0]}")
    return tuple(pinned)


def _is_disk_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_ERRORS


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_on = False


@contextlib.contextmanager
def _quiet_progress_bars(transformers: Any) -> Iterator[None]:
    """Transformers' progress bars ("Loading weights", "Writing model shards") off
    while a model is loaded and saved here, then as they were."""
    hf_logging = transformers.utils.logging
    global _quiet_depth, _bars_were_on
    with _quiet_lock:
        if _quiet_depth == 0:
            _bars_were_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _bars_were_on:
                hf_logging.enable_progress_bar()
