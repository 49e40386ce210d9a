"""Real, small scikit-learn trainings logged by hand, for the comparison tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import SGDRegressor
from sklearn.preprocessing import StandardScaler

import mlhooks

EPOCHS = 6


def _data() -> tuple[Any, Any, Any, Any]:
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    return X[:300], y[:300], X[300:], y[300:]


def train(name: str, eta0: float, backend: Any = None) -> tuple[str, dict[str, list[float]]]:
    """One SGD regression trained epoch by epoch; returns the run id and what was logged."""
    X, y, X_val, y_val = _data()
    model = SGDRegressor(eta0=eta0, learning_rate="constant", random_state=0)
    logged: dict[str, list[float]] = {"val_rmse": [], "val_r2": []}
    with mlhooks.start_run(name, backends=backend) as run:
        mlhooks.log_params({"eta0": eta0, "model": "SGDRegressor", "epochs": EPOCHS})
        for epoch in range(EPOCHS):
            model.partial_fit(X, y)
            rmse = float(np.sqrt(np.mean((model.predict(X_val) - y_val) ** 2)))
            r2 = float(model.score(X_val, y_val))
            logged["val_rmse"].append(rmse)
            logged["val_r2"].append(r2)
            mlhooks.log_metrics({"val_rmse": rmse, "val_r2": r2}, step=epoch)
    return run.run_id, logged
