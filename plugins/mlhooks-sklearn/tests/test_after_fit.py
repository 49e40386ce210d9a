"""What happens after a fit: evaluation datasets, post-training metrics, plots, and
``partial_fit`` loops."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.model_selection import train_test_split

import mlhooks
import mlhooks_sklearn
from conftest import Store


def test_metrics_on_predictions_are_logged_to_the_models_run(store: Store, autolog: None) -> None:
    from sklearn import metrics

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)

    predicted = model.predict(X_test)
    accuracy = metrics.accuracy_score(y_test, predicted)
    macro = metrics.f1_score(y_test, predicted, average="macro")
    micro = metrics.f1_score(y_test, predicted, average="micro")
    proba = model.predict_proba(X_test)
    loss = metrics.log_loss(y_test, proba)
    score = model.score(X_test, y_test)
    metrics.confusion_matrix(y_test, predicted)  # not a number: not logged
    metrics.accuracy_score(y_test, y_test)  # no prediction of a tracked model: not logged

    run = store.only_run()
    logged = run.data.metrics
    assert logged["accuracy_score_X_test"] == pytest.approx(accuracy)
    assert logged["f1_score_X_test"] == pytest.approx(macro)
    assert logged["f1_score-2_X_test"] == pytest.approx(micro)  # MLflow's naming
    assert logged["log_loss_X_test"] == pytest.approx(loss)
    assert logged["LogisticRegression_score_X_test"] == pytest.approx(score)
    assert not any(k.startswith(("confusion_matrix", "accuracy_score-2")) for k in logged)
    assert store.dataset_inputs(run) == [
        ("X_test", "eval"),
        ("X_train", "train"),
        ("y_train", "train"),
    ]


def test_post_training_metrics_can_be_turned_off(store: Store) -> None:
    mlhooks.autolog(sklearn={"log_post_training_metrics": False, "log_models": False})
    from sklearn import metrics

    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    metrics.r2_score(y, model.predict(X))
    assert not any(k.startswith("r2_score") for k in store.only_run().data.metrics)


def test_untracked_models_and_disabled_autolog_log_nothing_after_fit(store: Store) -> None:
    from sklearn import metrics

    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)  # before autolog: not tracked
    mlhooks.autolog()
    metrics.r2_score(y, model.predict(X))
    mlhooks.autolog(disable=True)
    assert store.runs() == []


def test_plots_are_drawn_off_the_training_thread(store: Store) -> None:
    mlhooks.autolog(sklearn={"log_plots": True, "log_models": False})
    X, y = load_iris(return_X_y=True)
    LogisticRegression(max_iter=300).fit(X, y)
    assert mlhooks_sklearn.wait_for_plots(60)

    run = store.only_run()
    assert store.artifacts(run) == [
        "training_confusion_matrix.png",
        "training_precision_recall_curve.png",
        "training_roc_curve.png",
    ]


def test_a_partial_fit_loop_is_one_run_with_a_step_per_call(store: Store, autolog: None) -> None:
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    model = SGDClassifier(random_state=0)
    batches = np.array_split(order, 5)
    for batch in batches:
        model.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
    scores = [model.score(X[b], y[b]) for b in batches[-1:]]
    del model
    gc.collect()  # the loop's run ends when its estimator goes

    run = store.only_run()
    assert run.info.run_name == "SGDClassifier"
    assert run.info.status == "FINISHED"
    accuracy = store.history(run, "training_accuracy_score")
    assert [step for step, _ in accuracy] == [0, 1, 2, 3, 4]
    assert accuracy[-1][1] == pytest.approx(scores[-1])
    assert run.data.params["loss"] == "hinge"
    assert store.artifacts(run) == ["model"]  # stored once, when the loop ended


def test_a_partial_fit_loop_in_a_user_run_logs_there(store: Store, autolog: None) -> None:
    X, y = load_iris(return_X_y=True)
    with mlhooks.start_run("streaming"):
        model = SGDClassifier(random_state=0)
        for batch in np.array_split(np.arange(len(y)), 3):
            model.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
        assert mlhooks.active_run() is not None and mlhooks.active_run().name == "streaming"
    run = store.only_run()
    assert [s for s, _ in store.history(run, "training_accuracy_score")] == [0, 1, 2]
    assert store.artifacts(run) == ["model"]


def test_a_partial_fit_loops_model_is_registered_when_asked(store: Store) -> None:
    mlhooks.autolog(sklearn={"registered_model_name": "stream"})
    X, y = load_iris(return_X_y=True)
    with mlhooks.start_run("streaming"):
        model = SGDClassifier(random_state=0)
        for batch in np.array_split(np.arange(len(y)), 3):
            model.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
    run = store.only_run()
    (version,) = store.client.search_model_versions("name='stream'")
    assert version.run_id == run.info.run_id


def test_fit_after_partial_fit_starts_a_new_run(store: Store, autolog: None) -> None:
    X, y = load_iris(return_X_y=True)
    model = SGDClassifier(random_state=0)
    model.partial_fit(X, y, classes=[0, 1, 2])
    model.fit(X, y)
    runs = store.runs()
    assert len(runs) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_tracked_model_goes_when_the_user_lets_go_of_it(store: Store, autolog: None) -> None:
    import weakref

    from sklearn import metrics

    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    metrics.r2_score(y, model.predict(X))  # remembered with its run, weakly
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None, "mlhooks kept a fitted model alive"
    assert "r2_score_X" in store.only_run().data.metrics
