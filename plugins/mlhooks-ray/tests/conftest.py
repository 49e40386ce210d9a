"""Fixtures: one local Ray cluster for the session (2 CPUs; each worker process with a
local store folder of its own, as on machines of their own), a real sqlite MLflow
store per test, and reading back what landed there."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.cloudpickle
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

import mlhooks
import training
from mlhooks_mlflow import RUN_ID_TAG

# Before the cluster starts, whose workers inherit the environment: strict mode there too.
os.environ.setdefault("MLHOOKS_STRICT", "1")
# A trial's end waits until its run is stored (its worker may be ended next): on a
# machine loaded by other test processes, a fresh worker's first store can take longer
# than the default 30 s, and the test would read the run before its end landed.
os.environ.setdefault("MLHOOKS_FLUSH_TIMEOUT", "300")
ray.cloudpickle.register_pickle_by_value(training)

PARENT_TAG = "mlflow.parentRunId"


@pytest.fixture(scope="session")
def worker_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each Ray worker process keeps its own local store."""
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="session")
def ray_cluster(worker_dirs: Path) -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for the session; its address is ``RAY_ADDRESS``, so
    that processes the tests start join it. Ray's files go to a temporary folder of
    its own (short: Ray's socket paths must stay under 108 characters)."""
    temp = tempfile.mkdtemp(prefix="ray-")
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={
            "worker_process_setup_hook": training.own_local_dir,
            "env_vars": {training.WORKER_DIRS: str(worker_dirs)},
        },
    )
    os.environ["RAY_ADDRESS"] = context.address_info["address"]
    yield context.address_info["address"]
    os.environ.pop("RAY_ADDRESS", None)
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def tracking_uri(ray_cluster: str, mlhooks_clean: None, mlflow_tracking_uri: str) -> str:
    """The test's own sqlite store, the default of the mlflow backend in the driver
    (``mlflow_tracking_uri`` comes from the pytest plugin ``mlhooks_mlflow.testing``);
    the workers are told it by the sweep."""
    return mlflow_tracking_uri


@pytest.fixture
def autolog(tracking_uri: str) -> Iterator[None]:
    """``autolog()`` once, in the driver: nothing in the trainables."""
    mlhooks.autolog()
    yield
    mlhooks.autolog(disable=True)


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """Where Tune keeps the experiment (never ~/ray_results)."""
    return str(tmp_path / "ray-results")


class Store:
    """What landed in the test's MLflow store."""

    def __init__(self) -> None:
        self.client = MlflowClient()

    def runs(self) -> list[Run]:
        assert mlhooks.flush(120), "mlhooks did not store everything in time"
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(experiments)
        return [run for run in runs if RUN_ID_TAG in run.data.tags]

    def sweep_run(self) -> Run:
        (run,) = [run for run in self.runs() if "ray.tune.experiment" in run.data.tags]
        return run

    def children(self, parent: Run) -> dict[str, Run]:
        """``parent``'s children by their Ray trial id."""
        runs = [r for r in self.runs() if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
        return {run.data.tags["ray.tune.trial.id"]: run for run in runs}

    def history(self, run: Run, key: str) -> list[tuple[int, float]]:
        points = self.client.get_metric_history(run.info.run_id, key)
        return sorted((m.step, m.value) for m in points)


@pytest.fixture
def store(tracking_uri: str) -> Store:
    return Store()


def by_trial(results: Any) -> dict[str, Any]:
    """A ``ResultGrid``'s results by trial id."""
    return {result.metrics["trial_id"]: result for result in results}
