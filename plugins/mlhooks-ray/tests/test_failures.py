"""Trials that fail: one whose trainable raises (its worker ends its run FAILED, the
exception goes on to Tune unchanged) and one whose worker process dies (the driver ends
its run FAILED); and one that a stop criterion ends early (FINISHED). The sweep itself
goes on and ends FINISHED."""

from __future__ import annotations

from ray import tune

import training
from conftest import Store


def test_failed_and_dead_trials_end_failed_and_a_stopped_one_finished(
    autolog: None, store: Store, storage: str
) -> None:
    fails = {1.0: "raise", 2.0: "die", 3.0: "no"}
    tuner = tune.Tuner(
        training.failing,
        param_space={
            "alpha": tune.grid_search(list(fails)),
            "fail": tune.sample_from(lambda spec: fails[spec.config.alpha]),
        },
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        # The trial that neither raises nor dies reports 3.0 first: stopped there.
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"loss": 2.5}),
    )
    results = tuner.fit()
    errors = {result.config["fail"]: result.error for result in results if result.error}
    assert set(errors) == {"raise", "die"}
    assert "a bad region of the search space" in str(errors["raise"])

    sweep = store.sweep_run()
    assert sweep.info.status == "FINISHED"
    children = store.children(sweep)
    assert len(children) == 3
    by_fail = {run.data.params["fail"]: run for run in children.values()}
    assert by_fail["raise"].info.status == "FAILED"
    assert by_fail["raise"].data.tags["ray.tune.trial.status"] == "ERROR"
    assert store.history(by_fail["raise"], "loss") == [(1, 1.0)]
    assert by_fail["die"].info.status == "FAILED"  # ended by the driver
    assert by_fail["die"].data.tags["ray.tune.trial.status"] == "ERROR"
    assert by_fail["die"].data.params["alpha"] == "2.0"
    assert by_fail["no"].info.status == "FINISHED"
    assert by_fail["no"].data.tags["ray.tune.trial.status"] == "TERMINATED"
    assert store.history(by_fail["no"], "loss") == [(1, 3.0)]
    # the best of the trials that completed
    (done,) = [r for r in results if not r.error]
    assert sweep.data.tags["ray.tune.best_trial.id"] == done.metrics["trial_id"]
