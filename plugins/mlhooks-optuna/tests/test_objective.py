"""What the objective does lands in its trial's run: the fits autologged inside it (a
scikit-learn model, an XGBoost training whose callback reports to the trial) and what
it logs by hand; never a run of its own at the top level."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import xgboost as xgb

from conftest import Store, X, Y, ridge_objective
from mlhooks_mlflow.testing import stored_models


def test_a_fit_inside_the_objective_lands_in_the_trials_run(autolog: None, store: Store) -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(ridge_objective, n_trials=4)

    assert len(store.runs()) == 5  # the study and its trials: no run of the fits' own
    parent = store.study_run()
    children = store.children(parent)
    assert len(children) == 4
    for run, trial in zip(children, study.trials, strict=True):
        params = run.data.params
        assert params["log_alpha"] == str(trial.params["log_alpha"])  # the trial's
        assert float(params["alpha"]) == pytest.approx(10 ** trial.params["log_alpha"])  # Ridge's
        assert params["fit_intercept"] == str(trial.params["fit_intercept"])  # both agree
        assert run.data.tags["estimator_name"] == "Ridge"
        assert run.data.metrics["trial_number"] == trial.number
        assert run.data.metrics["value"] == trial.value
        assert "training_score" in run.data.metrics
        assert "model" in stored_models(store.client, run.info.run_id)  # a logged model


def test_a_report_from_inside_a_tracked_fit_is_an_intermediate_value(
    autolog: None, store: Store
) -> None:
    """A pruning callback reports to the trial from inside ``xgboost.train``, where
    ``Trial.report`` is a nested call of a tracked fit."""

    class ReportToTrial(xgb.callback.TrainingCallback):
        def __init__(self, trial: optuna.Trial) -> None:
            self.trial = trial

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            self.trial.report(evals_log["valid"]["rmse"][-1], epoch)
            return self.trial.should_prune()

    dtrain = xgb.DMatrix(X[:150], label=Y[:150])
    dvalid = xgb.DMatrix(X[150:], label=Y[150:])

    def objective(trial: optuna.Trial) -> float:
        params = {"nthread": 1, "eta": trial.suggest_float("eta", 0.05, 0.5)}
        evals: dict[str, Any] = {}
        xgb.train(params, dtrain, 5, evals=[(dvalid, "valid")], evals_result=evals,
                  callbacks=[ReportToTrial(trial)], verbose_eval=False)  # fmt: skip
        return float(evals["valid"]["rmse"][-1])

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=2)

    parent = store.study_run()
    for run, trial in zip(store.children(parent), study.trials, strict=True):
        assert store.history(run, "intermediate_value") == sorted(trial.intermediate_values.items())
        assert [step for step, _ in store.history(run, "valid-rmse")] == list(range(5))
        assert run.data.params["eta"] == str(trial.params["eta"])
        assert run.data.params["num_boost_round"] == "5"  # XGBoost's fit, in the same run
    assert len(store.runs()) == 3
