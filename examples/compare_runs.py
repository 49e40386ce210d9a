"""Two tracked trainings of the same model with different learning rates, to compare.

Each run trains scikit-learn's SGDRegressor on the bundled diabetes data epoch by
epoch, logging the validation RMSE and R² at every epoch. Then compare them:

    python examples/compare_runs.py
    mlhooks compare <id of run 1> <id of run 2> --html report.html   # printed below
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import SGDRegressor
from sklearn.preprocessing import StandardScaler

import mlhooks

X, y = load_diabetes(return_X_y=True)
X = StandardScaler().fit_transform(X)
y = (y - y.mean()) / y.std()
X_train, y_train, X_val, y_val = X[:300], y[:300], X[300:], y[300:]

run_ids = []
for eta0 in (0.001, 0.01):
    model = SGDRegressor(eta0=eta0, learning_rate="constant", random_state=0)
    with mlhooks.start_run(f"sgd-eta0-{eta0}", log_system_metrics=False) as run:
        mlhooks.log_params({"model": "SGDRegressor", "eta0": eta0, "epochs": 30})
        for epoch in range(30):
            model.partial_fit(X_train, y_train)
            rmse = float(np.sqrt(np.mean((model.predict(X_val) - y_val) ** 2)))
            mlhooks.log_metrics({"val_rmse": rmse, "val_r2": model.score(X_val, y_val)}, epoch)
    run_ids.append(run.run_id)

print(mlhooks.compare_runs(run_ids).to_string(index=False))
print()
print("Compare them on the command line, with an HTML report:")
print(f"  mlhooks compare {' '.join(run_ids)} --html report.html")
