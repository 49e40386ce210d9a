"""A Tuner sweep of scikit-learn trials, autologged from one ``autolog()`` in the
driver, read back from a real sqlite MLflow store: the sweep's run, a child run per
trial with its config and every reported step, the fits inside each trial in its run,
the best trial on the sweep's run; each worker with a local store folder of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune

import training
from conftest import Store, by_trial
from mlhooks_mlflow import RUN_ID_TAG
from mlhooks_mlflow.testing import stored_models

ALPHAS = [0.01, 3.0, 300.0]


def test_a_sweep_is_a_parent_run_with_a_child_run_per_trial(
    autolog: None, store: Store, storage: str, tmp_path: Path, worker_dirs: Path
) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    tuner = tune.Tuner(
        training.ridge,
        param_space={
            "alpha": tune.grid_search(ALPHAS),
            "seen": str(seen),
            # One trial calls mlhooks.autolog() itself too: it lands like the others.
            "autolog_too": tune.sample_from(lambda spec: spec.config.alpha == ALPHAS[1]),
        },
        tune_config=tune.TuneConfig(metric="mean_r2", mode="max", reuse_actors=True),
        run_config=tune.RunConfig(name="ridge-sweep", storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    trials = by_trial(results)

    sweep = store.sweep_run()
    assert sweep.info.run_name == "ridge-sweep"
    assert sweep.info.status == "FINISHED"
    assert sweep.data.params == {
        "metric": "mean_r2",
        "mode": "max",
        "num_samples": "1",
        "search_alg": "BasicVariantGenerator",
        "scheduler": "FIFOScheduler",
    }
    assert sweep.data.tags["ray.tune.experiment"] == "ridge-sweep"
    assert sweep.data.tags["mlhooks.framework"] == "ray"

    children = store.children(sweep)
    assert set(children) == set(trials)  # one run per trial, and nothing else
    assert len(store.runs()) == 1 + len(ALPHAS)  # no run of the fits' own
    for trial_id, run in children.items():
        result = trials[trial_id]
        alpha = result.config["alpha"]
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"ridge_{trial_id}"  # the trial's name in Tune
        assert run.data.tags["ray.tune.trial.status"] == "TERMINATED"
        # The trial's config, as params (the Ridge fit logs alpha too: the same value).
        assert run.data.params["alpha"] == str(alpha)
        assert run.data.params["seen"] == str(seen)
        assert run.data.params["autolog_too"] == str(alpha == ALPHAS[1])
        # Every reported step, at its training_iteration, once.
        reported = result.metrics_dataframe
        for key in ("fold_r2", "mean_r2"):
            expected = list(zip(reported["training_iteration"], reported[key], strict=True))
            assert store.history(run, key) == expected
        assert [step for step, _ in store.history(run, "mean_r2")] == [1, 2, 3]
        # The fit inside the trial logged into the trial's run.
        assert run.data.tags["estimator_name"] == "Ridge"
        assert run.data.params["solver"] == "auto"
        assert "training_score" in run.data.metrics
        assert "model" in stored_models(store.client, run.info.run_id)

    best = results.get_best_result()  # by the last mean_r2, as Tune ranks trials
    best_run = children[best.metrics["trial_id"]]
    assert sweep.data.tags["ray.tune.best_trial.id"] == best.metrics["trial_id"]
    assert sweep.data.tags["ray.tune.best_trial.run_id"] == best_run.data.tags[RUN_ID_TAG]
    assert sweep.data.metrics["best_value"] == pytest.approx(best.metrics["mean_r2"])

    # Each worker wrote to its own local store folder, none to the driver's: nothing
    # relies on a folder the driver and its workers share.
    records = [json.loads(path.read_text()) for path in seen.iterdir()]
    assert len(records) == len(ALPHAS)
    for record in records:
        assert record["local_dir"] == str(worker_dirs / f"worker-{record['pid']}")
        assert ".journal" in record["local_dir_holds"]  # mlhooks wrote there
    # 3 trials on 2 CPUs with reuse_actors: a worker ran two trials, one run each.
    assert len({record["pid"] for record in records}) < len(ALPHAS)


@pytest.mark.parametrize("ending", ["stop criterion", "done"])
def test_a_class_trainables_steps_and_fits_land_in_its_trials_run(
    autolog: None, store: Store, storage: str, ending: str
) -> None:
    """Two steps: Tune stops the trial (a stop criterion), or the trainable says it is
    done (its run then ends before Tune hears it, see ``mlhooks_ray.trainables``)."""
    stop, done_at = (
        ({"training_iteration": 2}, {}) if ending == "stop criterion" else ({}, {"done_at": 2})
    )
    tuner = tune.Tuner(
        training.RidgeSteps,
        param_space={"alpha": tune.grid_search([0.1, 10.0]), **done_at},
        tune_config=tune.TuneConfig(metric="r2", mode="max"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop=stop),
    )
    results = tuner.fit()
    assert not results.errors
    trials = by_trial(results)

    sweep = store.sweep_run()
    children = store.children(sweep)
    assert set(children) == set(trials)
    for trial_id, run in children.items():
        result = trials[trial_id]
        assert run.info.run_name == f"RidgeSteps_{trial_id}"
        assert run.info.status == "FINISHED"
        assert run.data.tags["ray.tune.trial.status"] == "TERMINATED"
        assert run.data.params["alpha"] == str(result.config["alpha"])
        reported = result.metrics_dataframe
        expected = list(zip(reported["training_iteration"], reported["r2"], strict=True))
        assert store.history(run, "r2") == expected == [(1, expected[0][1]), (2, expected[1][1])]
        assert store.history(run, "rows") == [(1, 90.0), (2, 120.0)]
        assert run.data.tags["estimator_name"] == "Ridge"  # each step's fit, in the run
    best = results.get_best_result()
    assert sweep.data.tags["ray.tune.best_trial.id"] == best.metrics["trial_id"]


def test_what_a_function_returns_is_its_trials_last_logged_value(
    autolog: None, store: Store, storage: str
) -> None:
    """Tune reports what a trainable function returns as its last result: the trial's
    run logs it, then ends, before Tune hears that the trial is done."""
    tuner = tune.Tuner(
        training.returning,
        param_space={"a": tune.grid_search([1])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    (run,) = store.children(store.sweep_run()).values()
    assert run.info.status == "FINISHED"
    assert run.data.tags["ray.tune.trial.status"] == "TERMINATED"
    assert store.history(run, "score") == [(1, 1.0), (2, 2.0)]
