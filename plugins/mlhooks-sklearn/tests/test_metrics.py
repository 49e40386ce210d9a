"""The training metrics of a regressor agree with scikit-learn's metric functions, for
one output (dot products) and several (the general path), constant targets included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn import metrics as skm

from mlhooks_sklearn.metrics import regression

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def _sklearn(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "training_mean_squared_error": skm.mean_squared_error(y, predicted),
        "training_root_mean_squared_error": skm.root_mean_squared_error(y, predicted),
        "training_mean_absolute_error": skm.mean_absolute_error(y, predicted),
        "training_r2_score": skm.r2_score(y, predicted),
    }


pairs = st.integers(2, 40).flatmap(  # r2 needs two samples
    lambda n: st.tuples(arrays(float, n, elements=values), arrays(float, n, elements=values))
)


@settings(max_examples=200, deadline=None)
@given(pairs)
def test_one_output_agrees_with_sklearn(pair: tuple[np.ndarray, np.ndarray]) -> None:
    y, predicted = pair
    ours, theirs = regression(y, predicted), _sklearn(y, predicted)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-6)
    general = regression(y[:, None], predicted[:, None])  # the path of several outputs
    assert general == pytest.approx(ours, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize(
    ("y", "predicted", "r2"),
    [([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], 1.0), ([2.0, 2.0, 2.0], [2.0, 2.0, 3.0], 0.0)],
)
def test_a_constant_target_scores_perfect_or_nothing(
    y: list[float], predicted: list[float], r2: float
) -> None:
    assert regression(np.array(y), np.array(predicted))["training_r2_score"] == r2
    assert skm.r2_score(y, predicted) == r2


def test_mismatched_or_empty_give_nothing() -> None:
    assert regression(np.array([]), np.array([])) == {}
    assert regression(np.array([1.0, 2.0]), np.array([1.0])) == {}
    assert regression(np.array(["a"], dtype=object), np.array([1.0])) == {}
