"""Fixtures: a real sqlite MLflow store per test, autologging on, and reading back
what landed there (runs, their parent, their metrics)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from sklearn.linear_model import Ridge

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG

os.environ.setdefault("MLHOOKS_STRICT", "1")
optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are logged on purpose

PARENT_TAG = "mlflow.parentRunId"


@pytest.fixture(autouse=True)
def tracking_uri(mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``)."""
    return mlflow_tracking_uri


@pytest.fixture
def autolog() -> Iterator[None]:
    mlhooks.autolog()
    yield
    mlhooks.autolog(disable=True)


class Store:
    """What landed in the test's MLflow store."""

    def __init__(self) -> None:
        self.client = MlflowClient()

    def runs(self, filter_string: str = "") -> list[Run]:
        assert mlhooks.flush(120), "mlhooks did not store everything in time"
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(experiments, filter_string=filter_string)
        return [run for run in runs if RUN_ID_TAG in run.data.tags]

    def top_level(self) -> list[Run]:
        return [run for run in self.runs() if PARENT_TAG not in run.data.tags]

    def study_run(self) -> Run:
        (run,) = self.top_level()
        return run

    def children(self, parent: Run) -> list[Run]:
        """``parent``'s children, by trial number (their name, ``trial-<n>``)."""
        runs = self.runs(f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
        return sorted(runs, key=lambda run: int(run.info.run_name.rsplit("-", 1)[-1]))

    def history(self, run: Run, key: str) -> list[tuple[int, float]]:
        points = self.client.get_metric_history(run.info.run_id, key)
        return sorted((m.step, m.value) for m in points)


@pytest.fixture
def store() -> Store:
    return Store()


rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4))
Y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.3, size=200)


def ridge_objective(trial: optuna.Trial) -> float:
    """Fits a scikit-learn model (tracked, under autolog) and logs a metric by hand."""
    log_alpha = trial.suggest_float("log_alpha", -3, 2)
    fit_intercept = trial.suggest_categorical("fit_intercept", [True, False])
    model = Ridge(alpha=10**log_alpha, fit_intercept=fit_intercept).fit(X[:150], Y[:150])
    mlhooks.log_metric("trial_number", trial.number)  # the user's own logging
    return float(model.score(X[150:], Y[150:]))
