"""The plugins mlhooks ships as distributions of their own, so that a message about a
framework that is not tracked or a backend that is not there can say what to install.
"""

from __future__ import annotations

import importlib.metadata

FRAMEWORKS = {
    # integration name -> (the framework's importable module, the distribution)
    "sklearn": ("sklearn", "mlhooks-sklearn"),
    "xgboost": ("xgboost", "mlhooks-xgboost"),
    "lightgbm": ("lightgbm", "mlhooks-lightgbm"),
    "lightning": ("lightning", "mlhooks-lightning"),
    "pytorch_lightning": ("pytorch_lightning", "mlhooks-lightning"),
    "transformers": ("transformers", "mlhooks-transformers"),
    "ray": ("ray", "mlhooks-ray"),
}
BACKENDS = {
    "mlflow": "mlhooks-mlflow",
    "tensorboard": "mlhooks-tensorboard",
    "wandb": "mlhooks-wandb",
}


def install_hint(distribution: str) -> str:
    """What to do to get ``distribution``'s plugin: install it (from PyPI, or from a
    clone of mlhooks), or, when it is installed, let it load."""
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"pip install {distribution} (in a clone: pip install -e plugins/{distribution})"
    return f"{distribution} is installed but not loaded (MLHOOKS_PLUGINS, MLHOOKS_DISABLE_PLUGINS)"
