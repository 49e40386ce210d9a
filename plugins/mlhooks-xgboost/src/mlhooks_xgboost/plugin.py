"""The entry point: the XGBoost integration and what it patches.

Patched when ``xgboost`` is imported (never imported from here):

* ``train`` under each name it is called by: ``xgboost.train``,
  ``xgboost.training.train`` and ``xgboost.sklearn.train`` (the scikit-learn API binds
  its own name at import), tracked as one fit;
* ``xgboost.cv`` (also ``xgboost.training.cv``);
* ``fit`` of the scikit-learn API classes that define it (``XGBModel``, so
  ``XGBRegressor``, ``XGBClassifier``, ``XGBRanker``, ``XGBRFClassifier``,
  ``XGBRFRegressor``); their inner ``train`` call is not tracked again, it only receives
  the outer fit's per-round callback (:meth:`mlhooks.plugin.CallHandler.nested`);
* ``DMatrix.__init__`` and ``QuantileDMatrix.__init__``, to fingerprint the data a
  matrix is built from (a matrix keeps no reference to it).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import mlhooks
from mlhooks.plugin import Integration

from .options import XGBoostOptions

SKLEARN_CLASSES = (
    "XGBModel",
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
)


class XGBoostIntegration(Integration):
    name = "xgboost"
    modules = ("xgboost",)
    min_version = "2.0"
    max_version = "4.0"
    options = XGBoostOptions

    def patch(self, module: ModuleType) -> None:
        from . import handlers  # imports XGBoost, which is being imported anyway

        train, cv = handlers.TrainFit(), handlers.CvFit()
        for owner in (module, module.training, module.sklearn):
            if "train" in vars(owner):
                self.wrap(owner, "train", train)
        for owner in (module, module.training):
            if "cv" in vars(owner):
                self.wrap(owner, "cv", cv)
        fit = handlers.SklearnFit()
        for name in SKLEARN_CLASSES:
            klass = getattr(module.sklearn, name, None)
            if klass is not None and "fit" in vars(klass):
                self.wrap(klass, "fit", fit)
        source = handlers.DMatrixSource()
        for name in ("DMatrix", "QuantileDMatrix"):
            klass = getattr(module.core, name, None)
            if klass is not None and "__init__" in vars(klass):
                self.wrap(klass, "__init__", source)


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(XGBoostIntegration())
