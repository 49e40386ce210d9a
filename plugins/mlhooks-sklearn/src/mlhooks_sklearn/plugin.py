"""The plugin behind the ``sklearn`` entry point: the scikit-learn integration.

Patching is lazy, per submodule: importing ``sklearn.linear_model`` patches the
estimators that module exposes (and the sklearn classes they inherit from), nothing
else. Only methods that scikit-learn itself defines are patched, so a third-party
estimator that inherits ``fit`` from sklearn is tracked, while one that defines its own
``fit`` (XGBoost's ``XGBModel``, a user's class) is left to its own integration.
"""

from __future__ import annotations

import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from types import ModuleType

import mlhooks
from mlhooks.plugin import Integration

from .crossval import CrossValidation
from .estimators import EstimatorFit
from .evaluation import Evaluation, MetricCall, metric_functions
from .options import SklearnOptions
from .partial import PartialFit, on_run_end

FIT_METHODS = ("fit", "fit_transform", "fit_predict")
"""Training calls tracked as one fit each (a search's ``fit`` included)."""
EVAL_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "score")
"""Calls on a fitted model whose data and results post-training metrics follow."""
CROSS_VALIDATION = ("cross_validate", "cross_val_score")
_SKIPPED_SUBMODULES = {"conftest", "tests", "externals", "utils", "datasets", "exceptions"}
_EXPERIMENTAL = (
    "sklearn.experimental.enable_halving_search_cv",
    "sklearn.experimental.enable_iterative_imputer",
)


def _submodules() -> tuple[str, ...]:
    """``sklearn`` and its public submodules, listed from the installed package's
    folder without importing it (a directory listing: well under a millisecond)."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return ("sklearn",)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(spec.submodule_search_locations)
        if not info.name.startswith("_") and info.name not in _SKIPPED_SUBMODULES
    )
    return ("sklearn", *(f"sklearn.{name}" for name in names), *_EXPERIMENTAL)


def sklearn_classes(module: ModuleType) -> Iterator[type]:
    """The classes defined in ``sklearn`` that ``module``'s estimators are made of:
    every estimator class it exposes and the sklearn classes in their MROs."""
    base = importlib.import_module("sklearn.base")
    seen: set[type] = set()
    for value in list(vars(module).values()):
        if not (isinstance(value, type) and issubclass(value, base.BaseEstimator)):
            continue
        for klass in value.__mro__:
            if klass not in seen and klass.__module__.startswith("sklearn."):
                seen.add(klass)
                yield klass


class SklearnIntegration(Integration):
    name = "sklearn"
    modules = _submodules()
    distribution = "scikit-learn"
    min_version = "1.3"
    max_version = "2.0"
    options = SklearnOptions

    def __init__(self) -> None:
        super().__init__()
        self.fit_handler = EstimatorFit()
        self.partial_handler = PartialFit()
        self.eval_handler = Evaluation()
        self.metric_handler = MetricCall()
        self.cv_handler = CrossValidation()

    def patch(self, module: ModuleType) -> None:
        for klass in sklearn_classes(module):
            self._patch_class(klass)
        if module.__name__ == "sklearn.metrics":
            for name in metric_functions(module):
                self.wrap(module, name, self.metric_handler)
        if module.__name__ == "sklearn.model_selection":
            validation = importlib.import_module("sklearn.model_selection._validation")
            for owner in (validation, module):
                for name in CROSS_VALIDATION:
                    if name in vars(owner):
                        self.wrap(owner, name, self.cv_handler)

    def _patch_class(self, klass: type) -> None:
        defined = vars(klass)
        for name in FIT_METHODS:
            if name in defined:
                self.wrap(klass, name, self.fit_handler)
        if "partial_fit" in defined:
            self.wrap(klass, "partial_fit", self.partial_handler)
        for name in EVAL_METHODS:
            if name in defined:
                self.wrap(klass, name, self.eval_handler)


integration = SklearnIntegration()

__all__ = ["SklearnIntegration", "integration", "on_run_end", "register_integrations"]


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(integration)
