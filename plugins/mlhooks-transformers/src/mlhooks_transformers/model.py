"""The final model of a training, under the run's ``model/`` artifacts.

When training ends, the training thread only copies the weights to host memory (a
``state_dict`` of CPU tensors, ties kept): Transformers' ``save_pretrained`` costs a
tenth of a second the first time in a process, building its weight-conversion tables,
and writing a large model takes seconds. The rest happens on mlhooks' background
worker once no fit is running (``FitSession.in_background``):

* ``save_pretrained`` of the model with those weights, and of the Trainer's
  ``processing_class`` beside it;
* with MLflow installed, a tokenizer, and a pipeline task (the ``task`` option, else
  told by the model's class: ``...ForSequenceClassification`` is
  ``text-classification``, ...), that folder becomes an MLflow ``transformers`` model
  (``mlflow.transformers.load_model("runs:/<id>/model")`` gives a pipeline). MLflow is
  given what it would otherwise fetch from the Hugging Face Hub (a model card; the
  model reloaded from the local folder, so that no Hub name is looked up; the pip
  requirements, pinned to what is installed), so nothing is downloaded;
* otherwise, or when MLflow cannot save it, the ``save_pretrained`` folder itself
  (``AutoModel...from_pretrained`` on the downloaded artifacts loads it).

A model that is not a ``PreTrainedModel`` (the Trainer takes any ``torch.nn.Module``)
is logged as a pickled PyTorch model (with the MLflow backend, an MLflow ``pytorch``
model).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession, notice_once

from . import compat

CARD = """---
library_name: transformers
tags:
- mlhooks
---
A model trained with the Hugging Face Trainer, logged by mlhooks.
"""
REQUIREMENTS = ("transformers", "torch", "accelerate", "tokenizers", "safetensors")


def log_final_model(
    session: FitSession, model: Any, processing_class: Any, task: str | None
) -> None:
    """Capture ``model``'s weights now; save it in the background (see the module)."""
    if (
        not callable(getattr(model, "save_pretrained", None))
        or getattr(model, "config", None) is None
    ):
        session.log_model(model, name="model", flavor="pytorch")
        return
    saved = SavedModel(model, host_copy(model.state_dict()), processing_class, task)
    session.in_background(saved.write, artifact_path="model")


def host_copy(state: Any) -> dict[str, Any]:
    """The tensors of ``state`` copied to host memory; tensors that share memory (tied
    weights) share their copy, as ``save_pretrained`` expects."""
    copies: dict[tuple[Any, ...], Any] = {}
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        copy = copies.get(identity)
        if copy is None:
            copy = copies[identity] = tensor.detach().to("cpu", copy=True)
        out[key] = copy
    return out


class SavedModel:
    """What the background writes for one final model."""

    def __init__(
        self, model: Any, weights: dict[str, Any], processing_class: Any, task: str | None
    ) -> None:
        self.model = model
        self.weights = weights
        self.processing_class = processing_class
        self.task = task or compat.task_of(model)

    def write(self, directory: Path) -> None:
        """The MLflow model, else the ``save_pretrained`` folder, into ``directory``."""
        with tempfile.TemporaryDirectory(prefix="mlhooks-transformers-") as folder:
            pretrained = Path(folder) / "pretrained"
            with compat.quiet_progress_bars():
                self.model.save_pretrained(pretrained, state_dict=self.weights)
                if callable(getattr(self.processing_class, "save_pretrained", None)):
                    self.processing_class.save_pretrained(pretrained)
            self.weights = {}  # not needed any more: let go of the copy
            why_not = self.mlflow_model(pretrained, directory)
            if why_not is None:
                return
            if why_not:
                notice_once(
                    f"transformers-flavor:{why_not}",
                    "mlhooks: the final model is stored as its save_pretrained folder: "
                    f"MLflow's transformers flavor could not save it ({why_not})",
                )
            for item in directory.iterdir():  # what MLflow left of a failed save
                if item.is_dir():
                    shutil.rmtree(item)
                else:
                    item.unlink()
            shutil.copytree(pretrained, directory, dirs_exist_ok=True)

    def mlflow_model(self, pretrained: Path, directory: Path) -> str | None:
        """Save ``pretrained`` as an MLflow transformers model into ``directory``: None
        when saved, "" when the flavor does not apply (no MLflow, no tokenizer, no
        task), else why MLflow could not save it."""
        if self.task is None or not compat.is_tokenizer(self.processing_class):
            return ""
        try:
            import mlflow.transformers
            from huggingface_hub import ModelCard
            from transformers import AutoTokenizer
        except ImportError:
            return ""
        try:
            with compat.quiet_progress_bars():
                model = type(self.model).from_pretrained(pretrained, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(pretrained, local_files_only=True)
                mlflow.transformers.save_model(
                    transformers_model={"model": model, "tokenizer": tokenizer},
                    path=str(directory),
                    task=self.task,
                    model_card=ModelCard(CARD),
                    pip_requirements=requirements(),
                )
        except Exception as error:  # noqa: BLE001 - any model, any MLflow version
            return f"{type(error).__name__}: {error}"
        return None


def requirements() -> list[str]:
    """The installed versions of what loading the model needs (MLflow's own default
    guesses, and asks for torchvision)."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pinned.append(f"{name}=={version.split('+')[0]}")
    return pinned
