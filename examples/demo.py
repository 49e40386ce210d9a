"""A small training run tracked with mlhooks, then read back from the local store.

Fits a linear regression by gradient descent on generated data (numpy only, fixed
seed) and logs it with the manual API: params, a fingerprint of the training data,
loss and gradient norm at every epoch, and the fitted weights as the model. Everything
goes to the embedded store, ``./mlhooks-runs`` (or ``$MLHOOKS_LOCAL_DIR``).

Run it with ``nox -s demo`` or ``python examples/demo.py``.
"""

from __future__ import annotations

import numpy as np

import mlhooks

SEED, ROWS, FEATURES = 0, 1_000, 5
EPOCHS, LEARNING_RATE = 50, 0.1

rng = np.random.default_rng(SEED)
X = rng.normal(size=(ROWS, FEATURES))
true_w, true_b = rng.normal(size=FEATURES), 0.5
y = X @ true_w + true_b + rng.normal(scale=0.1, size=ROWS)

with mlhooks.start_run(
    "demo-linear-regression", tags={"example": "demo", "model": "linear"}, backends="local"
) as run:
    mlhooks.log_params({"epochs": EPOCHS, "learning_rate": LEARNING_RATE, "seed": SEED})
    mlhooks.log_dataset(X, name="train")
    w, b = np.zeros(FEATURES), 0.0
    for epoch in range(EPOCHS):
        error = X @ w + b - y
        grad_w, grad_b = 2 * X.T @ error / ROWS, 2 * error.mean()
        w, b = w - LEARNING_RATE * grad_w, b - LEARNING_RATE * grad_b
        loss, grad_norm = float(error @ error / ROWS), float(np.linalg.norm([*grad_w, grad_b]))
        mlhooks.log_metrics({"loss": loss, "grad_norm": grad_norm}, step=epoch)
    mlhooks.log_model({"w": w, "b": b}, name="model")
# Leaving the block ended the run FINISHED and waited until everything was stored.

store = mlhooks.LocalStore()
stored = store.get_run(run.run_id)
points = sum(len(history) for history in stored.metrics.values())
losses = [point.value for point in stored.history("loss")]
run_dir = (store.root / run.run_id).resolve()
print(f"run        {stored.info.name} ({stored.info.run_id}), {stored.info.status.value}")
print(f"params     {stored.params}")
print(f"metrics    {points} points; loss {losses[0]:.3f} at epoch 0, {losses[-1]:.4f} at the end")
print(f"dataset    {stored.datasets[0].name}: shape {stored.datasets[0].shape}")
print(f"model      {stored.models[0].name} ({stored.models[0].flavor}, {stored.models[0].format})")
print(f"stored in  {run_dir}")
print()
print("Look at it: plain files, one folder per run")
print(f"  cat {run_dir / 'meta.json'}")
print(f"  head {run_dir / 'metrics.tsv'}    # key, step, timestamp (ms), value")
print(f"or in Python: mlhooks.LocalStore().get_run({run.run_id!r})")
