"""Iterations reach listeners as ``on_epoch_end`` events: each ``partial_fit`` call as
it ends, and the iterations of the curves an estimator records during ``fit`` once
it returned, before ``on_fit_end``; what they carry is stored once."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier, MLPRegressor

from conftest import Store
from mlhooks.testing.contract import EventLog

pytestmark = pytest.mark.usefixtures("autolog")


@pytest.fixture
def events(mlhooks_plugin: Any) -> EventLog:
    log = EventLog()
    mlhooks_plugin(log, name="events")
    return log


def test_a_curve_recorded_during_fit_reaches_listeners_before_the_fit_ends(
    store: Store, events: EventLog
) -> None:
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=12, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning: 12 iterations are too few
        model.fit(X, y)

    (fit,) = events.fits()  # every epoch between the fit's start and its end
    epochs = events.epochs()
    assert [(e.epoch, e.step) for e in epochs] == [(i, i) for i in range(model.n_iter_)]
    assert all(e.fit is fit for e in epochs)
    assert [e.metrics["loss"] for e in epochs] == pytest.approx(model.loss_curve_)
    stored = store.history(store.only_run(), "loss")
    assert [step for step, _ in stored] == list(range(model.n_iter_))  # once each


def test_each_iteration_carries_every_curve_at_it(events: EventLog) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(
        max_iter=6, early_stopping=True, validation_fraction=0.2, random_state=0
    ).fit(X, y)

    epochs = events.epochs()
    assert [e.epoch for e in epochs] == list(range(len(model.train_score_)))
    assert [e.metrics["train_score"] for e in epochs] == pytest.approx(list(model.train_score_))
    assert [e.metrics["validation_score"] for e in epochs] == pytest.approx(
        list(model.validation_score_)
    )


def test_each_partial_fit_call_is_an_epoch_with_its_loss(store: Store, events: EventLog) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    for rows in np.array_split(np.arange(len(y)), 3):
        model.partial_fit(X[rows], y[rows] / y.max())
    losses = list(model.loss_curve_)
    del model
    gc.collect()  # the loop's run ends when its estimator goes

    fits = events.fits()
    assert len(fits) == 3  # one fit per call, each with its step
    epochs = events.epochs()
    assert [(e.fit, e.epoch, e.step) for e in epochs] == [(f, i, i) for i, f in enumerate(fits)]
    assert [e.metrics["loss"] for e in epochs] == pytest.approx(losses)
    assert [step for step, _ in store.history(store.only_run(), "loss")] == [0, 1, 2]


def test_a_fit_without_iterations_reports_none(events: EventLog) -> None:
    X, y = load_diabetes(return_X_y=True)
    GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2).fit(X, y)
    fits = events.fits()  # the search, then each candidate's child run, within it
    assert fits[0].name == "GridSearchCV"
    assert sorted(fit.name for fit in fits[1:]) == ["candidate-0", "candidate-1"]
    assert events.epochs() == []
