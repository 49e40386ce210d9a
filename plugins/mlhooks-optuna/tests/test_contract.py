"""The core's shared safety contract and import/patch/unpatch orders, on real Optuna."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from mlhooks.testing.contract import IntegrationContract
from mlhooks_optuna import optimize

TRIALS = 3


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    for step in range(3):
        trial.report((x - 2) ** 2 + 3 - step, step)
    return (x - 2) ** 2


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))


class TestOptunaContract(IntegrationContract):
    framework = "optuna"
    modules = ("optuna",)
    targets = (
        "optuna.study.study:Study.optimize",  # what fit() calls
        "optuna.trial._trial:Trial.report",
    )
    fit_code = """
        import optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study()
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=2)
    """
    tracked_fits = 1 + TRIALS  # the study, and each trial
    emits_epochs = True  # each intermediate value a trial reports

    def fit(self) -> Any:
        study = _study()
        study.optimize(_objective, n_trials=TRIALS)
        return [(t.params["x"], t.value, t.intermediate_values) for t in study.trials]

    def fit_epochs(self) -> int:
        _study().optimize(_objective, n_trials=1)
        return 3

    def fit_raising(self, error: BaseException) -> None:
        def objective(trial: optuna.Trial) -> float:
            trial.suggest_float("x", -10, 10)
            raise error  # the first trial: the study stops there

        _study().optimize(objective, n_trials=TRIALS)

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(study: Any) -> dict[str, Any]:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(optimize, "study_params", boom)
