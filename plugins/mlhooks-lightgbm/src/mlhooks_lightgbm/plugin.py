"""The entry point: the LightGBM integration and what it patches.

Patched when ``lightgbm`` is imported (never imported from here):

* ``train`` under each name it is called by: ``lightgbm.train``,
  ``lightgbm.engine.train`` and ``lightgbm.sklearn.train`` (the scikit-learn API binds
  its own name at import), tracked as one fit;
* ``cv`` (``lightgbm.cv`` and ``lightgbm.engine.cv``);
* ``fit`` of the scikit-learn API classes that define it (``LGBMModel``,
  ``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``); their inner ``train`` call is
  not tracked again, it only receives the outer fit's per-iteration callback
  (:meth:`mlhooks.plugin.CallHandler.nested`);
* ``Dataset.__init__``, to fingerprint the data a Dataset is built from (it drops
  that data once constructed).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import mlhooks
from mlhooks.plugin import Integration

from .options import LightGBMOptions

SKLEARN_CLASSES = ("LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")


class LightGBMIntegration(Integration):
    name = "lightgbm"
    modules = ("lightgbm",)
    min_version = "4.0"
    max_version = "5.0"
    options = LightGBMOptions

    def patch(self, module: ModuleType) -> None:
        from . import datasets, handlers  # imports LightGBM, which is being imported anyway

        train, cv = handlers.TrainFit(), handlers.CvFit()
        for owner in (module, module.engine, module.sklearn):
            if "train" in vars(owner):
                self.wrap(owner, "train", train)
        for owner in (module, module.engine):
            if "cv" in vars(owner):
                self.wrap(owner, "cv", cv)
        fit = handlers.SklearnFit()
        for name in SKLEARN_CLASSES:
            klass = getattr(module.sklearn, name, None)
            if klass is not None and "fit" in vars(klass):
                self.wrap(klass, "fit", fit)
        self.wrap(module.basic.Dataset, "__init__", datasets.DatasetSource())


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(LightGBMIntegration())
