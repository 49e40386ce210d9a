"""An Optuna study tracked by ``mlhooks.autolog()`` alone: a run for the study, a child
run per trial with its params, its validation accuracy epoch by epoch (reported to the
pruner) and its final value, and the scikit-learn model each trial trains, in its run.

    python examples/optuna_study.py        # needs optuna, scikit-learn, mlhooks-optuna
                                           # and mlhooks-sklearn (+ mlhooks-mlflow)
    mlflow ui --backend-store-uri sqlite:///mlflow.db   # with the MLflow plugin

The study is stored in ./optuna-example.db: run the script again, or several copies of
it at once, and the new trials join the same study and the same run.
"""

from __future__ import annotations

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

import mlhooks

mlhooks.autolog()
optuna.logging.set_verbosity(optuna.logging.WARNING)

X, y = load_digits(return_X_y=True)
X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)
X_train, y_train, X_valid, y_valid = X[:1200], y[:1200], X[1200:], y[1200:]
CLASSES = np.unique(y)
EPOCHS = 15


def objective(trial: optuna.Trial) -> float:
    alpha = trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"])
    model = SGDClassifier(alpha=alpha, loss=loss, random_state=trial.number)
    for epoch in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=CLASSES)  # tracked, into the trial's run
        accuracy = float(model.score(X_valid, y_valid))
        trial.report(accuracy, epoch)  # the trial run's intermediate_value at this step
        if trial.should_prune():
            raise optuna.TrialPruned()
    return accuracy


study = optuna.create_study(
    study_name="digits-sgd",
    storage="sqlite:///optuna-example.db",
    load_if_exists=True,
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=0),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3),
)
study.optimize(objective, n_trials=30, n_jobs=2)
mlhooks.flush()

states = [t.state.name for t in study.trials]
print(f"{len(states)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned")
best = study.best_trial
print(f"best: trial {best.number}, accuracy {best.value:.3f}, {best.params}")
run_id = study.user_attrs["mlhooks.run_id"]
where = mlhooks.describe_backends()[0]
print(f"the study's run {run_id} is in {where.location}: `mlhooks show {run_id}` prints it")
