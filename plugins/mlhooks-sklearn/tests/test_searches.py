"""Searches as a parent run with a child per candidate; cross-validation as one run."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
from conftest import Store


def test_a_grid_search_in_worker_processes_has_a_child_per_candidate(
    store: Store, autolog: None
) -> None:
    X, y = load_diabetes(return_X_y=True)
    grid = {
        "reg__alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
        "reg__fit_intercept": [True, False],
    }  # 12 candidates
    pipeline = Pipeline([("scale", StandardScaler()), ("reg", Ridge())])
    search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2)
    search.fit(X, y)

    parent = store.run_named("GridSearchCV")
    assert parent.data.params["best_reg__alpha"] == str(search.best_params_["reg__alpha"])
    assert parent.data.params["cv"] == "3"
    assert parent.data.params["estimator__reg__alpha"] == "1.0"
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert "training_r2_score" in parent.data.metrics
    assert store.artifacts(parent) == ["cv_results.csv", "model"]
    loaded = mlflow.sklearn.load_model(f"runs:/{parent.info.run_id}/model")
    np.testing.assert_allclose(loaded.predict(X), search.best_estimator_.predict(X))

    children = store.children(parent)
    assert len(children) == 12
    results = search.cv_results_
    for child in children:
        row = int(child.info.run_name.split("-")[-1])
        expected = {k: str(v) for k, v in results["params"][row].items()}
        assert child.data.params == expected
        assert child.data.metrics["mean_test_score"] == pytest.approx(
            results["mean_test_score"][row]
        )
        assert child.data.metrics["std_test_score"] == pytest.approx(results["std_test_score"][row])
        assert child.data.metrics["rank_test_score"] == results["rank_test_score"][row]
        assert child.data.metrics["split2_test_score"] == pytest.approx(
            results["split2_test_score"][row]
        )
        assert child.info.status == "FINISHED"
    assert len(store.runs()) == 13  # the candidates' own fits ran untracked


def test_max_tuning_runs_keeps_the_best_candidates(store: Store) -> None:
    mlhooks.autolog(sklearn={"max_tuning_runs": 3, "log_models": False})
    X, y = load_iris(return_X_y=True)
    search = RandomizedSearchCV(
        LogisticRegression(max_iter=300),
        {"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]},
        n_iter=6,
        cv=3,
        random_state=0,
        return_train_score=True,
    ).fit(X, y)

    parent = store.run_named("RandomizedSearchCV")
    children = store.children(parent)
    assert len(children) == 3
    ranks = sorted(search.cv_results_["rank_test_score"])[:3]
    assert sorted(c.data.metrics["rank_test_score"] for c in children) == ranks
    assert all("mean_train_score" in c.data.metrics for c in children)


def test_a_halving_search_logs_each_candidate_per_iteration(store: Store, autolog: None) -> None:
    X, y = load_iris(return_X_y=True)
    search = HalvingGridSearchCV(
        LogisticRegression(max_iter=300), {"C": [0.01, 0.1, 1.0, 10.0]}, cv=3, factor=2,
        random_state=0,
    ).fit(X, y)  # fmt: skip

    parent = store.run_named("HalvingGridSearchCV")
    children = store.children(parent)
    assert len(children) == 4  # one per candidate, not one per (candidate, iteration)
    results = search.cv_results_
    best = next(c for c in children if c.data.params == {"C": str(search.best_params_["C"])})
    rows = [i for i, p in enumerate(results["params"]) if p == search.best_params_]
    history = store.history(best, "mean_test_score")
    assert [step for step, _ in history] == [int(results["iter"][i]) for i in rows]
    assert [v for _, v in history] == pytest.approx([results["mean_test_score"][i] for i in rows])


def test_cross_validate_is_one_run_with_fold_and_mean_scores(store: Store, autolog: None) -> None:
    # Functions are patched where sklearn defines them: a name imported before
    # autolog() keeps the original (classes have no such problem).
    from sklearn.model_selection import cross_validate

    X, y = load_diabetes(return_X_y=True)
    scores = cross_validate(Ridge(alpha=0.5), X, y, cv=4, return_train_score=True)

    run = store.only_run()  # not one run per fold
    assert run.info.run_name == "Ridge cross_validate"
    assert run.data.params["alpha"] == "0.5"
    assert run.data.params["cv"] == "4"
    folds = store.history(run, "test_score")
    assert [step for step, _ in folds] == [0, 1, 2, 3]
    assert [v for _, v in folds] == pytest.approx(list(scores["test_score"]))
    assert run.data.metrics["mean_test_score"] == pytest.approx(scores["test_score"].mean())
    assert run.data.metrics["mean_train_score"] == pytest.approx(scores["train_score"].mean())
    assert store.dataset_inputs(run) == [("X", "train"), ("y", "train")]


def test_cross_val_score_is_one_run(store: Store, autolog: None) -> None:
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(LogisticRegression(max_iter=300), X, y, cv=3, n_jobs=2)

    run = store.only_run()
    assert run.info.run_name == "LogisticRegression cross_val_score"
    assert [v for _, v in store.history(run, "test_score")] == pytest.approx(list(scores))
    assert run.data.metrics["std_test_score"] == pytest.approx(scores.std())


def test_fits_on_helper_threads_belong_to_the_tracked_fit(store: Store, autolog: None) -> None:
    from sklearn.ensemble import IsolationForest

    X, _ = load_iris(return_X_y=True)
    IsolationForest(n_estimators=6, n_jobs=2, random_state=0).fit(X)  # trees fit on threads
    assert [r.info.run_name for r in store.runs()] == ["IsolationForest"]


def test_folds_of_an_unpatched_cross_validation_are_not_runs_of_their_own(
    store: Store,
) -> None:
    from sklearn.model_selection import cross_val_score, cross_validate  # before autolog()

    mlhooks.autolog()
    X, y = load_diabetes(return_X_y=True)
    with pytest.warns(mlhooks.MlhooksWarning, match="cross-validation are not tracked one by one"):
        cross_validate(Ridge(), X, y, cv=3)
    assert store.runs() == []
    cross_val_score(Ridge(), X, y, cv=3)  # calls the patched cross_validate inside
    assert [r.info.run_name for r in store.runs()] == ["Ridge cross_validate"]
