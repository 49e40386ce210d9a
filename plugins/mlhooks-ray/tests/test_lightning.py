"""A sweep of small Lightning trainings: Lightning's own autologging (hyper-parameters,
epoch metrics, the model) lands in each trial's run, beside the trial's config and
what the trial reports to Tune after each epoch. The sweep runs inside a run the user
opened with ``mlflow.start_run()``: the sweep's run is a child of it."""

from __future__ import annotations

import mlflow
from ray import tune

import training
from conftest import Store, by_trial
from mlhooks_mlflow.testing import stored_models


def test_lightning_trainings_land_in_their_trials_runs(
    autolog: None, store: Store, storage: str
) -> None:
    tuner = tune.Tuner(
        training.lightning_mlp,
        param_space={"hidden": tune.grid_search([4, 8]), "lr": 0.05},
        tune_config=tune.TuneConfig(metric="tune_val_loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    with mlflow.start_run(run_name="users-run") as users_run:
        results = tuner.fit()
    assert not results.errors
    trials = by_trial(results)

    sweep = store.sweep_run()
    assert sweep.data.tags["mlflow.parentRunId"] == users_run.info.run_id
    children = store.children(sweep)
    assert set(children) == set(trials)
    assert len(store.runs()) == 1 + len(trials)  # Lightning's fits opened no run of their own
    for trial_id, run in children.items():
        result = trials[trial_id]
        assert run.info.status == "FINISHED"
        assert run.data.params["hidden"] == str(result.config["hidden"])  # config and
        assert run.data.params["lr"] == "0.05"  # Lightning's hyper-parameters agree
        reported = result.metrics_dataframe
        expected = list(zip(reported["training_iteration"], reported["tune_val_loss"], strict=True))
        assert store.history(run, "tune_val_loss") == expected  # each epoch's report
        assert [step for step, _ in expected] == [1, 2]
        assert len(store.history(run, "train_loss")) == 2  # Lightning's, per epoch
        assert run.data.tags["ray.tune.trial.status"] == "TERMINATED"
        assert "model" in stored_models(store.client, run.info.run_id)

    best = results.get_best_result()
    assert sweep.data.tags["ray.tune.best_trial.id"] == best.metrics["trial_id"]
