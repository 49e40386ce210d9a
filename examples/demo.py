"""Bike-sharing demand forecasting, tracked by ``mlhooks.autolog()`` into MLflow.

One year of generated hourly data (season, hour, weekday, temperature, humidity ->
rentals, with rush hours and weather effects), then ordinary scikit-learn code: a plain
fit of a gradient-boosting pipeline, an evaluation on the last 60 days, and a small grid
search. Nothing in the training code mentions tracking: ``autolog()`` records params,
datasets, training and step-wise metrics, the evaluation metric, every search candidate
as a child run, and the models, into MLflow's default store, ``sqlite:///mlflow.db`` in
this folder (or ``$MLFLOW_TRACKING_URI``), which ``mlflow ui`` then shows.

Run it with ``nox -s demo`` or ``python examples/demo.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mlhooks

mlhooks.autolog()  # before the training code: every fit below is tracked

from mlflow.tracking import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

SEED, DAYS, TEST_DAYS = 0, 365, 60
SEASONS = np.array(["winter", "spring", "summer", "autumn"])


def hourly_rentals(days: int = DAYS, seed: int = SEED) -> pd.DataFrame:
    """Generated hourly bike rentals: commuter peaks on weekdays, leisure rides at
    weekend middays, fewer rides when it is cold, hot or humid."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2025-01-01", periods=days * 24, freq="h")
    hour, weekday = time.hour.to_numpy(), time.day_of_week.to_numpy()
    day = time.day_of_year.to_numpy()
    season = SEASONS[(time.month.to_numpy() % 12) // 3]
    temperature = (
        12 + 10 * np.sin(2 * np.pi * (day - 110) / 365) + 4 * np.sin(2 * np.pi * (hour - 9) / 24)
    ) + rng.normal(0, 2.5, len(time))
    humidity = np.clip(65 - 0.9 * (temperature - 12) + rng.normal(0, 12, len(time)), 15, 100)
    workday = weekday < 5
    commute = workday * (np.exp(-((hour - 8) ** 2) / 2) + 1.2 * np.exp(-((hour - 17.5) ** 2) / 3))
    leisure = ~workday * np.exp(-((hour - 14) ** 2) / 12)
    daytime = np.clip(np.sin(np.pi * (hour - 5) / 18), 0.05, None)
    weather = np.exp(-(((temperature - 22) / 12) ** 2)) * (1.2 - humidity / 130)
    demand = 40 + 300 * weather * (0.35 * daytime + commute + 1.1 * leisure)
    return pd.DataFrame(
        {
            "season": season,
            # Whole numbers as floats: an integer column in a model's signature cannot
            # take a missing value at inference, which MLflow hints at for every model.
            "hour": hour.astype(float),
            "weekday": weekday.astype(float),
            "temperature": temperature.round(1),
            "humidity": humidity.round(0),
            "rentals": rng.poisson(demand),
        },
        index=time,
    )


data = hourly_rentals()
features = ["season", "hour", "weekday", "temperature", "humidity"]
split = len(data) - TEST_DAYS * 24  # the last 60 days are the test period
X_train, y_train = data[features][:split], data["rentals"][:split]
X_test, y_test = data[features][split:], data["rentals"][split:]

model = Pipeline(
    [
        (
            "prepare",
            ColumnTransformer(
                [("season", OneHotEncoder(handle_unknown="ignore"), ["season"])],
                remainder="passthrough",
            ),
        ),
        (
            "boost",
            HistGradientBoostingRegressor(
                max_iter=150,
                learning_rate=0.1,
                early_stopping=True,  # scores every iteration: step-wise curves in MLflow
                n_iter_no_change=20,
                random_state=SEED,
            ),
        ),
    ]
)
model.fit(X_train, y_train)  # one run: params, datasets, training metrics, model
test_mae = mean_absolute_error(y_test, model.predict(X_test))  # logged as ..._X_test

search = GridSearchCV(
    model,
    {"boost__learning_rate": [0.05, 0.1], "boost__max_leaf_nodes": [15, 31]},
    cv=TimeSeriesSplit(n_splits=3),
    scoring="neg_mean_absolute_error",
)
search.fit(X_train, y_train)  # a parent run and one child run per candidate
mlhooks.flush()  # wait until everything is stored (exiting would wait too)

client = MlflowClient()
experiments = [e.experiment_id for e in client.search_experiments()]
fit_run = client.search_runs(experiments, "attributes.run_name = 'Pipeline'")[0]
search_run = client.search_runs(experiments, "attributes.run_name = 'GridSearchCV'")[0]
children = client.search_runs(
    experiments, f"tags.`mlflow.parentRunId` = '{search_run.info.run_id}'"
)
fit_metrics = fit_run.data.metrics
print(f"plain fit   run {fit_run.info.run_id}, {len(fit_run.data.params)} params")
print(f"            training MAE {fit_metrics['training_mean_absolute_error']:.1f} rentals/hour, "
      f"test MAE {fit_metrics['mean_absolute_error_X_test']:.1f} (logged from the "
      "mean_absolute_error call)")  # fmt: skip
print(f"            model: runs:/{fit_run.info.run_id}/model")
print(f"grid search run {search_run.info.run_id}, {len(children)} candidates as child runs")
print(
    "            best: "
    + ", ".join(f"{k[5:]}={v}" for k, v in search_run.data.params.items() if k.startswith("best_"))
    + f", cross-validated MAE {-search_run.data.metrics['best_cv_score']:.1f}"
)
print(f"stored in   {client.tracking_uri} (test MAE {test_mae:.1f})")
print()
print("Open it in the MLflow UI, from this folder:")
print("  mlflow ui --backend-store-uri sqlite:///mlflow.db")
# The UI shows its GenAI pages until told otherwise: the link asks for model training.
print(f"  then http://127.0.0.1:5000/#/experiments/{fit_run.info.experiment_id}"
      "?workflowType=machine_learning")  # fmt: skip
