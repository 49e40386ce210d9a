"""The checkpoint files a Trainer's ModelCheckpoint callbacks save, each reported once.

A file is reported when it appears (looked for at the tracker's hooks, cheaply: a
callback's paths only change when it saved) and copied at once, so that ``save_top_k``
deleting it later cannot matter. Files that were there before the fit are not new.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlhooks.plugin import FitSession, ModelArtifact

from . import compat

CHECKPOINT_FLAVOR = "lightning_checkpoint"


class Checkpoints:
    """The checkpoints of one Trainer; reports nothing unless ``enabled``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._watched: list[Any] = []
        self._signatures: dict[int, tuple[Any, ...]] = {}
        self._reported: set[tuple[str, int, int]] = set()
        self._saved_at: tuple[Any, Any] | None = None

    def watch(self, checkpointers: list[Any]) -> None:
        """Look for new files of ``checkpointers`` from now on (their files that are
        there already are not new)."""
        self._watched = checkpointers
        for checkpointer in checkpointers:
            self._signatures[id(checkpointer)] = _signature(checkpointer)
            for path in _paths(checkpointer):
                if os.path.exists(path):
                    self._reported.add(_file_key(path))

    def poll(self, trainer: Any, session: FitSession) -> None:
        """Report checkpoints saved since the last look (cheap when there are none)."""
        if not self.enabled:
            return
        for checkpointer in self._watched:
            signature = _signature(checkpointer)
            if self._signatures.get(id(checkpointer)) != signature:
                self._signatures[id(checkpointer)] = signature
                self.saved(trainer, checkpointer, session)

    def saving(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being saved: its file, reported at the next look, belongs
        to this epoch and step."""
        self._saved_at = (checkpoint.get("epoch"), checkpoint.get("global_step"))

    def saved(self, trainer: Any, checkpointer: Any, session: FitSession) -> None:
        """Report the files of ``checkpointer`` not reported yet: the file is copied
        now, so that ``save_top_k`` deleting it later cannot matter."""
        if not self.enabled:
            return
        for path in _paths(checkpointer):
            try:
                key = _file_key(path)
            except OSError:
                continue  # already gone
            if key in self._reported:
                continue
            self._reported.add(key)
            score = checkpointer.best_k_models.get(path)
            epoch, step = self._saved_at or (trainer.current_epoch, trainer.global_step)
            session.model_saved(
                ModelArtifact(
                    name=f"checkpoints/{Path(path).stem}",
                    flavor=CHECKPOINT_FLAVOR,
                    path=path,
                    format="file",
                    metadata={
                        "monitor": checkpointer.monitor,
                        "score": compat.to_float(score) if score is not None else None,
                        "best": path == checkpointer.best_model_path,
                        "last": path == checkpointer.last_model_path,
                        "epoch": epoch,
                        "global_step": step,
                    },
                )
            )


def _signature(checkpointer: Any) -> tuple[Any, ...]:
    return (
        checkpointer.last_model_path,
        checkpointer.best_model_path,
        tuple(checkpointer.best_k_models),
    )


def _paths(checkpointer: Any) -> list[str]:
    """The files a ModelCheckpoint keeps (without a monitor, only ``best_model_path``
    names the latest)."""
    paths = list(checkpointer.best_k_models)
    for path in (checkpointer.best_model_path, checkpointer.last_model_path):
        if path and path not in paths:
            paths.append(path)
    return [p for p in paths if p]


def _file_key(path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return (path, stat.st_mtime_ns, stat.st_size)
