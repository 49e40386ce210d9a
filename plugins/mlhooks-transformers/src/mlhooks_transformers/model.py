"""The final model of a training: the run's model ``model``, of flavor ``transformers``.

When training ends, the training thread only copies the weights to host memory (a
``state_dict`` of CPU tensors, ties kept): Transformers' ``save_pretrained`` costs a
tenth of a second the first time in a process, building its weight-conversion tables,
and writing a large model takes seconds. On mlhooks' background worker, once no fit is
running (``FitSession.model_in_background``), ``save_pretrained`` writes the model with
those weights, and the Trainer's ``processing_class`` beside it, into a folder that
goes to the backends by its path: a :class:`~mlhooks.plugin.ModelArtifact` of format
``directory``, with the pipeline task (the ``task`` option, else told by the model's
class: ``...ForSequenceClassification`` is ``text-classification``, ...) as its fact
``task``.

Each backend stores that folder as it stores models: the MLflow backend as an MLflow 3
logged model of the run, an MLflow ``transformers`` model when it can be one (a
tokenizer, a task), saved where the backend runs (the writer service, with
``MLHOOKS_SERVICE=1``), so that MLflow is never imported here; the local and in-memory
stores keep the folder itself.

A model that is not a ``PreTrainedModel`` (the Trainer takes any ``torch.nn.Module``)
is logged as a pickled PyTorch model (with the MLflow backend, an MLflow ``pytorch``
model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession

from . import compat

FLAVOR = "transformers"
"""The flavor of a model saved with ``save_pretrained`` (its folder)."""


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
    saved = SavedModel(model, host_copy(model.state_dict()), processing_class)
    facts: dict[str, Any] = {}
    task = task or compat.task_of(model)
    if task is not None:
        facts["task"] = task
    session.model_in_background(model, saved.write, name="model", flavor=FLAVOR, **facts)


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

    def __init__(self, model: Any, weights: dict[str, Any], processing_class: Any) -> None:
        self.model = model
        self.weights = weights
        self.processing_class = processing_class

    def write(self, folder: Path) -> None:
        """``save_pretrained`` of the model with the captured weights, and of the
        processing class, into ``folder``."""
        try:
            with compat.quiet_progress_bars():
                self.model.save_pretrained(folder, state_dict=self.weights)
                if callable(getattr(self.processing_class, "save_pretrained", None)):
                    self.processing_class.save_pretrained(folder)
        finally:
            self.weights = {}  # not needed any more: let go of the copy
