"""mlhooks-ray: tracks Ray Tune sweeps, a run per sweep and a child run per trial,
opened in the trial's Ray worker process.

Installed, it is found through the ``mlhooks`` entry-point group; ``mlhooks.autolog()``
patches Ray Tune when it is imported. Nothing here imports Ray until then.
"""

from .options import RayOptions
from .plugin import RayTuneIntegration

__all__ = ["RayOptions", "RayTuneIntegration"]
__version__ = "0.1.0"
