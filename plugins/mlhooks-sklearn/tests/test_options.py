"""``autolog(sklearn={...})`` is checked against SklearnOptions and reaches fits typed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import mlhooks
from conftest import Store
from mlhooks.plugin import settings_for
from mlhooks_sklearn.options import SklearnOptions


def test_a_misspelt_option_names_the_valid_ones_and_autolog_stays_off(store: Store) -> None:
    with pytest.raises(TypeError) as caught:
        mlhooks.autolog(sklearn={"max_tunning_runs": 3})
    message = str(caught.value)
    assert message.startswith(
        "autolog(sklearn={...}) got an unknown option 'max_tunning_runs'; did you mean "
        "'max_tuning_runs'? The options of sklearn: log_plots, log_post_training_metrics, "
        "log_training_metrics, max_tuning_runs, and the common ones: "
    )
    X, y = load_diabetes(return_X_y=True)
    Ridge().fit(X, y)
    assert store.runs() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tuning_runs": "3"}, r"'max_tuning_runs' must be int or None, not '3' \(str\)"),
        ({"log_plots": "yes"}, r"'log_plots' must be bool, not 'yes' \(str\)"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_expected_one(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=rf"^autolog\(sklearn=\{{\.\.\.\}}\): {message}$"):
        mlhooks.autolog(sklearn=options)


def test_a_negative_max_tuning_runs_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tuning_runs must be at least 0, not -1"):
        mlhooks.autolog(sklearn={"max_tuning_runs": -1})


def test_options_are_read_typed(store: Store) -> None:
    mlhooks.autolog(log_models=False, sklearn={"max_tuning_runs": np.int64(2), "log_models": True})
    options = settings_for("sklearn")
    assert isinstance(options, SklearnOptions)
    assert options.max_tuning_runs == 2 and type(options.max_tuning_runs) is int
    assert options.log_models is True and options.log_plots is False
    assert settings_for("xgboost").log_models is False


def test_training_metrics_can_be_turned_off(store: Store) -> None:
    mlhooks.autolog(sklearn={"log_training_metrics": False, "log_models": False})
    X, y = load_diabetes(return_X_y=True)
    Ridge().fit(X, y)
    metrics = store.only_run().data.metrics
    assert not any(key.startswith("training_") for key in metrics)
