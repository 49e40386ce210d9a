"""Models loaded back from W&B (``mlhooks.load_model(run, backend="wandb")``).

A model is a ``model`` artifact of its run, named after the model and the run
(:func:`~.mapping.artifact_name`), holding the model's file: ``model.pkl`` (or
``model.<format>``) for a captured object, the file itself for a checkpoint. The run's
folders under W&B's ``dir`` record each artifact with the place of W&B's staging copy of
its files, which stays on this machine until the artifact is uploaded: an offline run's
until ``wandb sync``. That copy is what is loaded; a model already uploaded and cleaned
up from staging is named with W&B's command that downloads it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlhooks.plugin import ModelArtifact

from . import reading
from .mapping import artifact_name, wandb_run_id


def load_model(root: Path, run_id: str, name: str, wait: float = 0.0) -> Any:
    """Model ``name`` of run ``run_id`` from the W&B folders under ``root``: the
    object, unpickled, or a checkpoint file as the :class:`~pathlib.Path` of a copy.
    Of a name stored several times (a checkpoint every epoch), the latest step's.
    ``wait``: seconds to wait for W&B's service to record a model not found yet (a run
    still open). ``KeyError`` when the run or the model is not there;
    ``FileNotFoundError`` when its files left this machine."""
    deadline = time.monotonic() + wait
    while True:
        folders = reading.run_dirs(root, run_id)
        models = [
            artifact
            for folder in folders
            for artifact in reading.load(folder).artifacts
            if artifact.type == "model"
        ]
        wanted = artifact_name(name, wandb_run_id(run_id))
        found = [artifact for artifact in models if artifact.name == wanted]
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if not folders:
        raise KeyError(f"run {run_id!r} has no W&B run folder under {root / 'wandb'}")
    if not found:
        suffix = f"-{wandb_run_id(run_id)}"
        names = sorted({a.name.removesuffix(suffix) for a in models})
        raise KeyError(
            f"run {run_id!r} has no model {name!r} in W&B"
            + (f"; its models: {', '.join(names)}" if names else "; it has no models")
        )
    # The latest step's; of equal steps, the last stored (found is in the order stored).
    latest = max(enumerate(found), key=lambda item: (_step(item[1].metadata), item[0]))[1]
    return _loaded(latest, name)


def _step(metadata: dict[str, Any]) -> int:
    step = ModelArtifact(name="", flavor="", metadata=metadata).step
    return -1 if step is None else step


def _loaded(artifact: reading.StoredArtifact, name: str) -> Any:
    metadata = artifact.metadata
    file_name = str(metadata.get("file", ""))
    inside = {path: local for path, local in artifact.files.items() if local}
    missing = [path for path, local in inside.items() if not Path(local).is_file()]
    if not inside or missing:
        raise FileNotFoundError(
            f"model {name!r} is no longer on this machine: W&B uploaded its artifact "
            f"{artifact.name!r} and removed the staged copy; download it with "
            f"`wandb artifact get <entity>/<project>/{artifact.name}:latest`"
        )
    model_format = str(metadata.get("format", "pickle"))
    if model_format in ModelArtifact.PICKLED and file_name in inside:
        payload = Path(inside[file_name]).read_bytes()
        flavor = str(metadata.get("flavor", ""))
        return ModelArtifact(name, flavor, payload=payload, format=model_format).load()
    # A file (or folder) kept as it was: a copy, so that W&B's staging stays W&B's.
    copy = Path(tempfile.mkdtemp(prefix="mlhooks-wandb-model-"))
    for path, local in inside.items():
        target = copy / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)
    return copy / file_name if file_name else copy
