"""mlhooks-lightgbm: tracks ``lightgbm.train``, ``lightgbm.cv`` and the scikit-learn API.

Installed, it is found through the ``mlhooks`` entry-point group; ``mlhooks.autolog()``
patches LightGBM when it is imported. Nothing here imports LightGBM until then.
"""

from .plugin import LightGBMIntegration

__all__ = ["LightGBMIntegration"]
__version__ = "0.1.0"
