"""The module of a fit: its summary when the fit starts; at its end, what came of it
(early stopping, the best checkpoint) and the module itself, with its final weights or
those of the best checkpoint."""

from __future__ import annotations

import os
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession

from . import compat, params


def log_summary(session: FitSession, module: Any) -> None:
    """``model_summary.txt``: the module's children and their parameter counts."""
    with tempfile.TemporaryDirectory(prefix="mlhooks-lightning-") as folder:
        path = Path(folder) / "model_summary.txt"
        path.write_text(params.summary(module))
        session.log_artifact(str(path))  # copied now; the folder may go


FRAMEWORK_PACKAGES = ("torch", "lightning", "pytorch_lightning", "torchmetrics")
"""Packages whose modules loading a LightningModule back imports."""


def framework_modules(module: Any) -> list[str]:
    """The modules of the framework classes ``module`` derives from (its class's own,
    the user's, excluded): what unpickling it imports besides the user's code."""
    found = []
    for cls in type(module).__mro__:
        name = cls.__module__
        if name.split(".")[0] in FRAMEWORK_PACKAGES and name not in found:
            found.append(name)
    return found


def log_fit_results(trainer: Any, session: FitSession, model: str) -> None:
    """Early stopping's outcome, the best checkpoint, and the module (``model``:
    ``"final"`` or ``"best"`` weights) at the end of a fit that succeeded."""
    stopper = getattr(trainer, "early_stopping_callback", None)
    if stopper is not None:
        values = {
            "early_stopping.stopped_epoch": stopper.stopped_epoch,
            "early_stopping.wait_count": stopper.wait_count,
        }
        best = compat.to_float(stopper.best_score)
        if best is not None and abs(best) != float("inf"):
            values["early_stopping.best_score"] = best
        session.log_metrics(values, step=trainer.global_step)
    checkpointer = trainer.checkpoint_callback
    best_path = getattr(checkpointer, "best_model_path", "") or ""
    if best_path:
        tags = {"mlhooks.lightning.best_checkpoint": f"checkpoints/{Path(best_path).stem}"}
        score = compat.to_float(getattr(checkpointer, "best_model_score", None))
        if score is not None:
            tags["mlhooks.lightning.best_score"] = repr(score)
        session.set_tags(tags)
    if not session.settings.log_models:
        return
    module = trainer.lightning_module
    if model == "best" and best_path and os.path.exists(best_path):
        module = _with_weights_of(module, best_path)
    example = getattr(module, "example_input_array", None)
    extra: dict[str, Any] = {}
    if example is not None and hasattr(example, "numpy"):
        extra["sample_input"] = example.detach().cpu().numpy()
    session.log_model(module, name="model", flavor="pytorch", **extra)


def _with_weights_of(module: Any, checkpoint_path: str) -> Any:
    """A copy of ``module`` holding the weights of the checkpoint."""
    import torch

    copy = deepcopy(module)  # as pickle would (no trainer), also for a class of a function
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    copy.load_state_dict(state["state_dict"])
    return copy
