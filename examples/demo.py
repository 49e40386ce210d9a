"""A small training run tracked with mlhooks into MLflow's default store.

Fits a linear regression by gradient descent on generated data (fixed seed), logging
params, a fingerprint of the training data, loss and gradient norm at every epoch, and
the final model as a real MLflow scikit-learn model. With the mlhooks-mlflow plugin
installed, runs go to MLflow's default store, ``sqlite:///mlflow.db`` in this folder
(or ``$MLFLOW_TRACKING_URI``), which ``mlflow ui`` then shows.

Run it with ``nox -s demo`` or ``python examples/demo.py``.
"""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LinearRegression

import mlhooks
from mlhooks_mlflow import RUN_ID_TAG

SEED, ROWS, FEATURES = 0, 1_000, 5
EPOCHS, LEARNING_RATE = 50, 0.1

rng = np.random.default_rng(SEED)
X = rng.normal(size=(ROWS, FEATURES))
y = X @ rng.normal(size=FEATURES) + 0.5 + rng.normal(scale=0.1, size=ROWS)

with mlhooks.start_run("demo-linear-regression", tags={"example": "demo"}) as run:
    mlhooks.log_params({"epochs": EPOCHS, "learning_rate": LEARNING_RATE, "seed": SEED})
    mlhooks.log_dataset(X, name="train")
    w, b = np.zeros(FEATURES), 0.0
    for epoch in range(EPOCHS):
        error = X @ w + b - y
        grad_w, grad_b = 2 * X.T @ error / ROWS, 2 * error.mean()
        w, b = w - LEARNING_RATE * grad_w, b - LEARNING_RATE * grad_b
        loss, grad_norm = float(error @ error / ROWS), float(np.linalg.norm([*grad_w, grad_b]))
        mlhooks.log_metrics({"loss": loss, "grad_norm": grad_norm}, step=epoch)
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = w, b, FEATURES
    mlhooks.log_model(model, name="model", sample_input=X[:5])
# Leaving the block ended the run FINISHED and waited until everything was stored.

client = MlflowClient()
(stored,) = client.search_runs(
    [e.experiment_id for e in client.search_experiments()],
    filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'",
)
history = client.get_metric_history(stored.info.run_id, "loss")
print(f"run        {stored.info.run_name} ({stored.info.run_id}), {stored.info.status}")
print(f"params     {stored.data.params}")
print(f"metrics    loss {history[0].value:.3f} at epoch 0, {history[-1].value:.4f} at the end")
print(f"dataset    {stored.inputs.dataset_inputs[0].dataset.name}")
print(f"model      runs:/{stored.info.run_id}/model")
print(f"stored in  {client.tracking_uri}")
print()
print("Open it in the MLflow UI, from this folder:")
print("  mlflow ui --backend-store-uri sqlite:///mlflow.db    # then http://127.0.0.1:5000")
