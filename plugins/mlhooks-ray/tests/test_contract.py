"""The core's shared safety contract and import/patch/unpatch orders, on real Ray Tune
(the session's cluster; the order tests' fresh interpreters join it through
``RAY_ADDRESS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

import training
from mlhooks.testing.contract import IntegrationContract
from mlhooks_ray import sweep


class TestRayTuneContract(IntegrationContract):
    framework = "ray"
    modules = ("ray.tune",)
    targets = (
        "ray.tune.impl.tuner_internal:run",  # what Tuner.fit calls
        "ray.tune.tune:run",
        "ray.tune:run",
    )
    fit_code = """
        import os
        from ray import tune

        def trainable(config):
            tune.report({"x": 1.0})

        tune.run(trainable, storage_path=os.path.abspath("ray-results"), verbose=0)
    """
    tracked_fits = 1  # the sweep: its trials' fits are tracked in their workers
    # Each reported step is an epoch of its trial, heard in the trial's worker, not in
    # this process: test_sweep.py checks each step stored once, at its step, in MLflow.
    test_listeners_hear_each_epoch = None  # type: ignore[assignment]

    @pytest.fixture(autouse=True)
    def _cluster(self, ray_cluster: str, tmp_path: Path) -> None:
        self.storage = str(tmp_path / "ray-results")

    def _tuner(self, **run_config: Any) -> tune.Tuner:
        return tune.Tuner(
            training.counting,
            param_space={"a": 1},
            tune_config=tune.TuneConfig(metric="x", mode="max", **run_config),
            run_config=tune.RunConfig(storage_path=self.storage, verbose=0),
        )

    def fit(self) -> Any:
        results = self._tuner().fit()
        assert not results.errors
        return sorted((result.config["a"], result.metrics["x"]) for result in results)

    def fit_raising(self, error: BaseException) -> None:
        def trial_name(trial: Any) -> str:
            raise error  # the user's code, run by Tune in this process

        self._tuner(trial_name_creator=trial_name).fit()

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(arguments: Any) -> dict[str, Any]:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(sweep, "sweep_params", boom)
