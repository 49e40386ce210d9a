"""``params_of`` is ``get_params(deep=True)`` for every estimator scikit-learn ships
(its constructor names read once per class), and follows a class whose constructor
changes."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.ensemble import BaggingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import all_estimators

from mlhooks_sklearn.sessions import params_of


def _instances() -> list[Any]:
    """Every estimator scikit-learn ships that builds with its defaults, and a few
    nested ones (pipelines and searches override get_params; a search's estimator is
    nested through its params)."""
    made: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, kind in all_estimators():
            try:
                made.append(kind())
            except TypeError:  # required arguments (meta-estimators)
                continue
    made += [
        BaggingRegressor(estimator=Ridge(alpha=3.0)),  # nested by BaseEstimator's rules
        make_pipeline(StandardScaler(), Ridge(alpha=2.0)),
        GridSearchCV(LogisticRegression(C=3.0), {"C": [1.0, 2.0]}),
        GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": [1.0]}),
    ]
    return made


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    if list(left) != list(right):
        return False
    for key, value in left.items():
        other = right[key]
        if value is other:
            continue
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            if not np.array_equal(value, other):
                return False
        elif value != other and not (value != value and other != other):  # NaN
            return False
    return True


@pytest.mark.filterwarnings("ignore")
def test_params_of_is_get_params_for_every_estimator() -> None:
    instances = _instances()
    assert len(instances) > 150
    for _ in range(2):  # the second time from the names read once
        for model in instances:
            assert _same(params_of(model), model.get_params(deep=True)), type(model)


def test_a_class_whose_constructor_changes_is_read_again() -> None:
    class Tunable(BaseEstimator):
        def __init__(self, rate: float = 0.1) -> None:
            self.rate = rate

    assert params_of(Tunable()) == {"rate": 0.1}

    def wider(self: Any, rate: float = 0.1, depth: int = 3) -> None:
        self.rate, self.depth = rate, depth

    Tunable.__init__ = wider  # type: ignore[method-assign]
    assert params_of(Tunable(depth=5)) == {"depth": 5, "rate": 0.1}


def test_overrides_and_foreign_nested_objects_are_asked_as_sklearn_asks() -> None:
    """A get_params set on one instance is the one used; a nested object that is not
    scikit-learn's is asked with ``get_params()``, as ``BaseEstimator`` asks it."""

    class Settings:
        def get_params(self) -> dict[str, Any]:  # takes no deep=
            return {"depth": 4}

    class Holder(BaseEstimator):
        def __init__(self, settings: Any = None, rate: float = 0.5) -> None:
            self.settings, self.rate = settings, rate

    held = Holder(settings=Settings())
    assert params_of(held) == held.get_params(deep=True)
    assert params_of(held)["settings__depth"] == 4

    tuned = Ridge(alpha=2.0)
    tuned.get_params = lambda deep=True: {"alpha": "instance's own"}  # type: ignore[method-assign]
    assert params_of(tuned) == {"alpha": "instance's own"}
