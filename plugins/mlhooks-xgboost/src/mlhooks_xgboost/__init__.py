"""mlhooks-xgboost: tracks ``xgboost.train``, ``xgboost.cv`` and the scikit-learn API.

Installed, it is found through the ``mlhooks`` entry-point group; ``mlhooks.autolog()``
patches XGBoost when it is imported. Nothing here imports XGBoost until then.
"""

from .plugin import XGBoostIntegration

__all__ = ["XGBoostIntegration"]
__version__ = "0.1.0"
