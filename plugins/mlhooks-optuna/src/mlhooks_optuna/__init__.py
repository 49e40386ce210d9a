"""mlhooks-optuna: tracks Optuna studies, a run per study and a child run per trial.

Installed, it is found through the ``mlhooks`` entry-point group; ``mlhooks.autolog()``
patches Optuna when it is imported. Nothing here imports Optuna until then.
"""

from .options import OptunaOptions
from .plugin import OptunaIntegration

__all__ = ["OptunaIntegration", "OptunaOptions"]
__version__ = "0.1.0"
