"""LightGBM tracked by ``mlhooks.autolog()`` alone: a booster trained with early
stopping, and a grid search over ``LGBMClassifier``, on scikit-learn's bundled breast
cancer data. Then everything is read back from MLflow.

    pip install -e plugins/mlhooks-mlflow -e plugins/mlhooks-lightgbm -e plugins/mlhooks-sklearn
    python examples/lightgbm_breast_cancer.py
    mlflow ui --backend-store-uri sqlite:///mlflow.db     # then http://127.0.0.1:5000

Runs go where MLflow would write (``MLFLOW_TRACKING_URI``, else ``./mlflow.db``).
"""

from __future__ import annotations

import lightgbm as lgb
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, train_test_split

import mlhooks

mlhooks.autolog()  # lightgbm, and scikit-learn's search, from here on

data = load_breast_cancer(as_frame=True)
X_train, X_valid, y_train, y_valid = train_test_split(
    data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
)

# 1. lightgbm.train: one run with the params, both validation sets' binary_logloss and
# auc at every iteration, early stopping, the datasets, split and gain importance
# (JSON and charts) and the booster as an MLflow lightgbm model.
train = lgb.Dataset(X_train, label=y_train)
valid = lgb.Dataset(X_valid, label=y_valid, reference=train)
params = {"objective": "binary", "metric": ["binary_logloss", "auc"], "learning_rate": 0.1,
          "num_leaves": 15, "verbose": -1, "num_threads": 1}  # fmt: skip
booster = lgb.train(
    params, train, num_boost_round=500, valid_sets=[train, valid], valid_names=["train", "valid"],
    callbacks=[lgb.early_stopping(20, verbose=False)],
)  # fmt: skip

# 2. A grid search: one run for the search, a child run per candidate.
search = GridSearchCV(
    lgb.LGBMClassifier(n_estimators=100, verbose=-1, num_threads=1),
    {"num_leaves": [7, 31], "learning_rate": [0.05, 0.2]},
    cv=3,
).fit(X_train, y_train)

assert mlhooks.flush(120)  # stored in the background; wait before reading back
client = MlflowClient()
experiment_ids = [e.experiment_id for e in client.search_experiments()]
for run in client.search_runs(experiment_ids, order_by=["attributes.start_time ASC"]):
    parent = run.data.tags.get("mlflow.parentRunId")
    child_of = f"  (child of {parent})" if parent else ""
    print(f"{run.info.run_name:<16} {run.info.run_id}{child_of}")
    if run.info.run_name == "lightgbm-train":
        trained = run
print(
    f"\nlightgbm-train stopped after {trained.data.metrics['stopped_iteration']:.0f} iterations;"
    f" best iteration {trained.data.metrics['best_iteration']:.0f},"
    f" valid auc {trained.data.metrics['best.valid-auc']:.4f}"
)
auc_points = client.get_metric_history(trained.info.run_id, "valid-auc")
print(f"valid-auc has {len(auc_points)} points, one per iteration")
print("artifacts:", sorted(a.path for a in client.list_artifacts(trained.info.run_id)))
# With MLflow 3 the model is a logged model of the run (the experiment's Models tab).
models = mlhooks.search_models(filter_string=f"source_run_id = '{trained.info.run_id}'")
print("models:", sorted(models["name"]))
model = mlhooks.load_model(trained.info.run_id)  # mlflow.lightgbm.load_model(models:/<id>)
same = (model.predict(X_valid) == booster.predict(X_valid)).all()
print(f"the logged model predicts as the booster does: {same}")
