"""Fixtures: a real sqlite MLflow store per test, and reading back what landed there."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG
from mlhooks_mlflow.testing import stored_models

os.environ.setdefault("MLHOOKS_STRICT", "1")


@pytest.fixture(autouse=True)
def tracking_uri(mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """Every test writes to its own sqlite store, the default of the mlflow backend
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``)."""
    return mlflow_tracking_uri


class Store:
    """What landed in the test's MLflow store."""

    def __init__(self) -> None:
        self.client = MlflowClient()

    def runs(self, filter_string: str = "") -> list[Run]:
        assert mlhooks.flush(120), "mlhooks did not store everything in time"
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        return list(self.client.search_runs(experiments, filter_string=filter_string))

    def only_run(self) -> Run:
        runs = self.runs()
        assert len(runs) == 1, [r.info.run_name for r in runs]
        return runs[0]

    def run_named(self, name: str) -> Run:
        runs = self.runs(f"attributes.run_name = '{name}'")
        assert len(runs) == 1, f"{len(runs)} runs named {name!r}"
        return runs[0]

    def run_of(self, mlhooks_run_id: str) -> Run:
        (run,) = self.runs(f"tags.`{RUN_ID_TAG}` = '{mlhooks_run_id}'")
        return run

    def children(self, parent: Run) -> list[Run]:
        return self.runs(f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")

    def history(self, run: Run, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run.info.run_id, key)]

    def artifacts(self, run: Run, path: str | None = None) -> list[str]:
        """The run's artifacts, but for the core's run context (``mlhooks/``), and its
        models (MLflow 3 keeps them as logged models, not among the artifacts)."""
        found = {a.path for a in self.client.list_artifacts(run.info.run_id, path)}
        if path is None:
            found |= set(stored_models(self.client, run.info.run_id))
        return sorted(found - {"mlhooks"})

    def dataset_inputs(self, run: Run) -> list[tuple[str, str]]:
        """(name, context) of each dataset logged to ``run``."""
        full = self.client.get_run(run.info.run_id)
        return sorted(
            (d.dataset.name, {t.key: t.value for t in d.tags}.get("mlflow.data.context", ""))
            for d in full.inputs.dataset_inputs
        )


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def autolog() -> Iterator[None]:
    mlhooks.autolog()
    yield
    mlhooks.autolog(disable=True)
