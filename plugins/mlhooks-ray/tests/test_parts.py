"""The parts that need no cluster: what a trial is told of its sweep, where its worker
keeps its local store, what of a result is logged, and the trainable Tune is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.experiment import Experiment
from ray.tune.registry import is_function_trainable

import mlhooks
from mlhooks.plugin import current_config
from mlhooks_ray.identity import SweepIdentity, autolog_arguments, identity_of, local_dir_for
from mlhooks_ray.trainables import TrackedTrial, tracked_trainable
from mlhooks_ray.trials import flatten, reported_metrics


def _identity(**changes: Any) -> SweepIdentity:
    values: dict[str, Any] = {
        "run_id": "a" * 32,
        "name": "sweep",
        "experiment": None,
        "backends": (),
        "autolog": {},
        "local_dir": "/driver/mlhooks-runs",
        "host": "driver-host",
    }
    return SweepIdentity(**{**values, **changes})


def test_trial_run_ids_are_the_same_wherever_they_are_computed() -> None:
    one, other = _identity(), _identity(run_id="b" * 32)
    assert one.trial_run_id("t_00001") == _identity().trial_run_id("t_00001")
    assert one.trial_run_id("t_00001") != one.trial_run_id("t_00002")
    assert one.trial_run_id("t_00001") != other.trial_run_id("t_00001")
    assert len(one.trial_run_id("t_00001")) == 32


def test_a_worker_keeps_its_own_local_store_folder() -> None:
    identity = _identity()
    assert local_dir_for(identity, "/worker/own", "driver-host", "/home/ray") == "/worker/own"
    assert local_dir_for(identity, "/worker/own", "elsewhere", "/home/ray") == "/worker/own"
    # None of its own: the driver's folder on the driver's machine, else where it started.
    assert local_dir_for(identity, None, "driver-host", "/home/ray") == "/driver/mlhooks-runs"
    elsewhere = local_dir_for(identity, None, "elsewhere", "/home/ray")
    assert elsewhere == str(Path("/home/ray/mlhooks-runs"))


def test_the_identity_carries_autologs_options_and_backends(
    mlhooks_clean: None, tmp_path: Path
) -> None:
    mlhooks.autolog(
        backends=["local", mlhooks.backend("local", root=str(tmp_path / "elsewhere"))],
        log_models=False,
        extra_tags={"team": "a"},
        sklearn={"log_training_metrics": False},
    )
    config = current_config()
    run = mlhooks.start_run("sweep")
    try:
        identity = identity_of(run.info)
    finally:
        mlhooks.end_run()
        mlhooks.autolog(disable=True)
    assert identity.run_id == run.run_id and identity.name == "sweep"
    assert identity.local_dir == str((tmp_path / "mlhooks-runs").resolve())
    default, explicit = identity.backends
    assert (default.name, dict(default.options)) == ("local", {})  # each worker's own
    assert explicit.options == {"root": str((tmp_path / "elsewhere").resolve())}
    arguments = identity.autolog
    assert arguments["log_models"] is False
    assert arguments["extra_tags"] == {"team": "a"}
    assert arguments["sklearn"] == {"log_training_metrics": False}
    assert "backends" not in arguments
    assert autolog_arguments(None) == {}
    assert autolog_arguments(config) == dict(arguments)


def test_only_what_the_trainable_reported_is_logged() -> None:
    result = {
        "loss": 0.5,
        "accuracy": 1,
        "nested": {"val": {"loss": 0.25}},
        "name": "text",
        "converged": True,
        "timestamp": 1700000000,
        "checkpoint_dir_name": None,
        "training_iteration": 3,
        "__duplicate__": True,
    }
    assert reported_metrics(result) == {"loss": 0.5, "accuracy": 1.0, "nested/val/loss": 0.25}
    assert flatten({"a": {"b": 1}, "c": [1]}) == {"a/b": 1, "c": [1]}


def _function(config: dict[str, Any]) -> None:
    tune.report({"x": 1.0})


class _Class(tune.Trainable):
    def step(self) -> dict[str, Any]:
        return {"x": 1.0}


@pytest.mark.parametrize("trainable", [_function, _Class, lambda config: None])
def test_the_tracked_trainable_is_named_and_run_as_the_users(trainable: Any) -> None:
    tracked = tracked_trainable(trainable, _identity())
    assert tracked is not None
    assert issubclass(tracked, TrackedTrial)
    assert Experiment.get_trainable_name(tracked) == Experiment.get_trainable_name(trainable)
    assert is_function_trainable(tracked) == is_function_trainable(trainable)
    assert tracked._mlhooks_sweep == _identity()
    if isinstance(trainable, type):
        assert issubclass(tracked, trainable)


def test_a_trainable_given_by_name_is_not_wrapped() -> None:
    assert tracked_trainable("PPO", _identity()) is None
