"""Plain fits of real estimators, read back from a real sqlite MLflow store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlhooks
from conftest import Store
from mlhooks import MlhooksWarning


def rentals(rows: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "season": rng.choice(["spring", "summer", "autumn", "winter"], rows),
            "hour": rng.integers(0, 24, rows),
            "temperature": rng.normal(15, 8, rows),
        }
    )
    y = pd.Series(50 + 3 * frame["temperature"] + rng.normal(0, 5, rows), name="rentals")
    return frame, y


def test_a_pipeline_on_a_dataframe_is_one_run_with_nested_params(
    store: Store, autolog: None
) -> None:
    X_train, y_train = rentals()
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["hour", "temperature"]),
                        ("cat", OneHotEncoder(), ["season"]),
                    ]
                ),
            ),
            ("reg", Ridge(alpha=0.5)),
        ]
    )
    model.fit(X_train, y_train)

    run = store.only_run()  # the steps' fits are nested: no run of their own
    assert run.info.run_name == "Pipeline"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["reg__alpha"] == "0.5"
    assert params["prep__num__with_mean"] == "True"
    assert params["prep__cat__handle_unknown"] == "error"
    assert run.data.tags["estimator_name"] == "Pipeline"
    assert run.data.tags["estimator_class"] == "sklearn.pipeline.Pipeline"
    predicted = model.predict(X_train)
    assert run.data.metrics["training_r2_score"] == pytest.approx(skm.r2_score(y_train, predicted))
    assert run.data.metrics["training_score"] == pytest.approx(model.score(X_train, y_train))
    assert store.dataset_inputs(run) == [("X_train", "train"), ("y_train", "train")]

    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X_train), predicted)
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == list(X_train.columns)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris], ids=["binary", "multiclass"])
def test_classifier_metrics_agree_with_sklearn(store: Store, autolog: None, loader: object) -> None:
    X, y = loader(return_X_y=True)  # type: ignore[operator]
    model = LogisticRegression(max_iter=200).fit(X, y)

    metrics = store.only_run().data.metrics
    predicted, proba = model.predict(X), model.predict_proba(X)
    auc = (
        skm.roc_auc_score(y, proba[:, 1])
        if proba.shape[1] == 2
        else skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    )
    expected = {
        "training_accuracy_score": skm.accuracy_score(y, predicted),
        "training_precision_score": skm.precision_score(y, predicted, average="weighted"),
        "training_recall_score": skm.recall_score(y, predicted, average="weighted"),
        "training_f1_score": skm.f1_score(y, predicted, average="weighted"),
        "training_log_loss": skm.log_loss(y, proba),
        "training_roc_auc": auc,
        "training_score": model.score(X, y),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-9), key
    assert metrics["n_iter"] == float(np.max(model.n_iter_))


def test_regressor_metrics_agree_with_sklearn(store: Store, autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)

    metrics = store.only_run().data.metrics
    predicted = model.predict(X)
    expected = {
        "training_mean_squared_error": skm.mean_squared_error(y, predicted),
        "training_root_mean_squared_error": skm.root_mean_squared_error(y, predicted),
        "training_mean_absolute_error": skm.mean_absolute_error(y, predicted),
        "training_r2_score": skm.r2_score(y, predicted),
        "training_score": model.score(X, y),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-9), key


def test_training_metrics_of_a_model_that_takes_missing_values(store: Store, autolog: None) -> None:
    """A model that takes NaN gets its training metrics, equal to sklearn's."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True)
    X = X.copy()
    X[::7, 2] = np.nan
    model = HistGradientBoostingRegressor(max_iter=20).fit(X, y)

    metrics = store.only_run().data.metrics
    assert metrics["training_r2_score"] == pytest.approx(skm.r2_score(y, model.predict(X)))
    assert metrics["training_score"] == pytest.approx(model.score(X, y))


def test_a_clusterer_logs_silhouette_and_inertia(store: Store, autolog: None) -> None:
    X, _ = load_iris(return_X_y=True)
    model = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)

    run = store.only_run()
    assert run.data.metrics["training_inertia"] == pytest.approx(model.inertia_)
    assert run.data.metrics["training_silhouette_score"] == pytest.approx(
        skm.silhouette_score(X, model.labels_)
    )
    assert run.data.params["n_clusters"] == "3"
    assert store.dataset_inputs(run) == [("X", "train")]


def test_fit_predict_and_fit_transform_are_tracked_once(store: Store, autolog: None) -> None:
    X, _ = load_iris(return_X_y=True)
    KMeans(n_clusters=2, n_init=1, random_state=0).fit_predict(X)
    StandardScaler().fit_transform(X)
    assert sorted(r.info.run_name for r in store.runs()) == ["KMeans", "StandardScaler"]


def test_mlp_curves_step_by_step(store: Store, autolog: None) -> None:
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning: 15 iterations are too few
        model.fit(X, y)

    run = store.only_run()
    loss = store.history(run, "loss")
    assert [step for step, _ in loss] == list(range(model.n_iter_))
    assert [value for _, value in loss] == pytest.approx(model.loss_curve_)
    assert run.data.metrics["n_iter"] == model.n_iter_
    assert run.data.metrics["best_loss"] == pytest.approx(model.best_loss_)


def test_hist_gradient_boosting_scores_per_iteration(store: Store, autolog: None) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(
        max_iter=8, early_stopping=True, validation_fraction=0.2, random_state=0
    ).fit(X, y)

    run = store.only_run()
    for key, curve in (
        ("train_score", model.train_score_),
        ("validation_score", model.validation_score_),
    ):
        points = store.history(run, key)
        assert [step for step, _ in points] == list(range(len(curve)))
        assert [value for _, value in points] == pytest.approx(list(curve))
    # saved with cloudpickle: loads although skops would not know HistGradientBoosting's types
    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_pipelines_curves_are_its_last_steps(store: Store, autolog: None) -> None:
    """A pipeline (nested in another) ending in a model that keeps curves: the run of
    the pipeline's fit has the model's step-wise curves."""
    X, y = load_breast_cancer(return_X_y=True)
    inner = make_pipeline(
        StandardScaler(),
        HistGradientBoostingClassifier(max_iter=6, early_stopping=True, random_state=0),
    )
    pipeline = make_pipeline(StandardScaler(), inner).fit(X, y)

    run = store.only_run()
    model = pipeline.steps[-1][1].steps[-1][1]
    points = store.history(run, "validation_score")
    assert [value for _, value in points] == pytest.approx(list(model.validation_score_))


def test_several_fits_in_a_user_run(store: Store, autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    with mlhooks.start_run("comparison"):
        Ridge(alpha=1.0).fit(X, y)
        with pytest.warns(MlhooksWarning, match="param 'alpha'.*kept '1.0'"):
            Ridge(alpha=2.0).fit(X, y)  # the second value cannot replace the first
        assert mlhooks.active_run() is not None
    run = store.only_run()
    assert run.info.run_name == "comparison"
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "1.0"
    assert len(store.history(run, "training_r2_score")) == 2  # both fits' metrics landed


class Inherits(Ridge):
    """A third party's estimator that inherits sklearn's fit."""


class OwnFit(Ridge):
    """One that brings its own fit (as XGBoost's estimators do): not patched."""

    def fit(self, X: object, y: object) -> OwnFit:
        return self


def test_inherited_fit_is_tracked_and_own_fit_is_not(store: Store, autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    Inherits().fit(X, y)
    OwnFit().fit(X, y)
    (run,) = store.runs()
    assert run.info.run_name == "Inherits"


def test_options_turn_models_and_datasets_off(store: Store) -> None:
    mlhooks.autolog(sklearn={"log_models": False, "log_datasets": False})
    X, y = load_diabetes(return_X_y=True)
    Ridge().fit(X, y)
    run = store.only_run()
    assert store.artifacts(run) == []
    assert store.dataset_inputs(run) == []
    assert "training_r2_score" in run.data.metrics
