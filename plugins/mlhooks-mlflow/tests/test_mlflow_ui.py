"""A run mlhooks stored, as a user sees it in the real MLflow UI (issue 15, item 2).

A real ``mlflow server`` on 127.0.0.1 takes an autologged scikit-learn fit like the
demo's (a gradient-boosting pipeline scored at every iteration, on a named dataset,
with its model); headless Chromium opens the link a user is given and the test reads
the rendered page: its params, a step-wise metric chart, its dataset, its logged model,
and the model-training view. The screenshots stay with the test's temporary files
(their folder is printed).

MLflow 3.17's UI takes its view (GenAI or model training) from the browser, not from
the experiment: the sidebar's switch, kept in the browser's storage and GenAI until a
user flips it, or ``?workflowType=machine_learning`` in the link. mlhooks still tags
the experiments it logs training runs into ``mlflow.experimentKind =
custom_model_development`` (what MLflow reads as a model-training experiment), and the
links the demo and the README give carry the parameter: that is what opens a fresh
browser on the model-training view, and what this test opens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from headless_chromium import HeadlessChromium, find_chromium
from mlflow.tracking import MlflowClient
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlhooks
from mlhooks_mlflow import MlflowBackend
from mlhooks_mlflow.testing import MlflowServer, requires_mlflow3

pytestmark = pytest.mark.browser

MODEL_TRAINING = "?workflowType=machine_learning"
ITERATIONS = 40


@pytest.fixture
def server(mlflow_server: MlflowServer) -> MlflowServer:
    """The session's real ``mlflow server`` (it outlives the test's mlhooks); the test's
    runs go to an experiment of its own there."""
    return mlflow_server


@pytest.fixture
def chromium() -> str:
    """Chromium's path; in CI (``CI`` set, as ``.ci/run`` does) a missing browser fails
    the test rather than skipping it."""
    found = find_chromium()
    if found is None:
        why = "headless Chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI runs the MLflow UI test, it must not skip")
        pytest.skip(why)
    return found


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[HeadlessChromium]:
    with HeadlessChromium(chromium, tmp_path / "chromium-profile", 1280, 900) as opened:
        yield opened


@pytest.fixture
def screenshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    """The test's folder of screenshots, named on the terminal after the test."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    with capsys.disabled():
        print(f"\nMLflow UI screenshots: {folder}")


def rentals(rows: int = 600) -> tuple[pd.DataFrame, pd.Series]:
    """Hourly bike rentals, generated (the demo's data in small): floats only."""
    rng = np.random.default_rng(0)
    hour = rng.integers(0, 24, rows).astype(float)
    temperature = rng.normal(15, 8, rows).round(1)
    demand = 40 + 25 * np.exp(-((hour - 17.5) ** 2) / 3) + 3 * temperature
    frame = pd.DataFrame({"hour": hour, "temperature": temperature})
    return frame, pd.Series(rng.poisson(np.clip(demand, 1, None)), name="rentals")


@requires_mlflow3("the UI's logged model and model-training view")
def test_a_tracked_fit_shows_in_the_mlflow_ui(
    server: MlflowServer, browser: HeadlessChromium, screenshots: Path
) -> None:
    mlhooks.autolog(backends=[MlflowBackend(tracking_uri=server.uri, experiment="bike-demand")])
    X_train, y_train = rentals()
    boost = HistGradientBoostingRegressor(
        max_iter=ITERATIONS, early_stopping=True, n_iter_no_change=ITERATIONS, random_state=0
    )
    make_pipeline(StandardScaler(), boost).fit(X_train, y_train)
    assert mlhooks.flush(60)

    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("bike-demand")
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "validation_score")) > 10
    (model,) = client.search_logged_models([experiment.experiment_id])
    experiment_page = f"{server.uri}/#/experiments/{experiment.experiment_id}"
    run_page = f"{experiment_page}/runs/{run.info.run_id}"

    # The MLflow Assistant's panel would cover a third of every screenshot.
    browser.open(f"{server.uri}/")
    browser.wait_for("document.readyState === 'complete'")
    browser.evaluate(
        "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'),"
        "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')"
    )

    # The experiment opens on its training runs, with the model-training navigation.
    browser.open(experiment_page + MODEL_TRAINING)
    browser.wait_for_text("bike-demand", "Pipeline", "1 matching run")
    navigation = browser.wait_for(_NAVIGATION, why="the model-training navigation")
    assert {"Runs", "Models", "Model registry"} <= set(navigation), navigation
    assert not {"Evaluation runs", "Judges", "Sessions"} & set(navigation), navigation
    assert "workflowType=machine_learning" in browser.evaluate("location.href")
    browser.screenshot(screenshots / "experiment.png")

    # The run: its params, its dataset and its logged model.
    params = run.data.params
    assert params["histgradientboostingregressor__max_iter"] == str(ITERATIONS)
    browser.open(run_page + MODEL_TRAINING)
    browser.wait_for_text(
        f"Parameters ({len(params)})",
        "histgradientboostingregressor__max_iter",
        "histgradientboostingregressor__learning_rate",
        "X_train",  # the dataset, by the name it had in the training code
        "Logged models (1)",
    )
    browser.wait_for(
        "[...document.querySelectorAll('a')]"
        f".some(a => a.href.includes('/models/{model.model_id}'))",
        why="a link to the run's logged model",
    )
    browser.screenshot(screenshots / "run.png")

    # Step-wise charts: the training and validation scores of every boosting iteration
    # (charts render when scrolled into view: validation_score comes last).
    browser.open(f"{run_page}/model-metrics{MODEL_TRAINING}")
    for metric in ("train_score", "validation_score"):
        chart = json.loads(browser.wait_for(_CHART.replace("METRIC", metric), why=metric))
        assert chart["xtitle"] == "Step" and chart["points"] > 10, (metric, chart)
    browser.screenshot(screenshots / "metrics.png")

    # The logged model: its source run, dataset and metrics.
    browser.open(f"{experiment_page}/models/{model.model_id}{MODEL_TRAINING}")
    browser.wait_for_text("Source run", run.info.run_id, "X_train", "validation_score")
    browser.screenshot(screenshots / "logged-model.png")


# The entries of the page's navigation, once it is the model-training one (the GenAI one
# has "Evaluation runs", "Judges", ...; the model-training one "Model registry").
_NAVIGATION = """(() => {
  const entries = [...document.querySelectorAll('nav')].flatMap(n => n.innerText.split('\\n'));
  return entries.includes('Model registry') ? entries : null;
})()"""

# The chart card of METRIC, scrolled into view: the title of its x axis and how many
# points its line has (markers, or the vertices of its path where the line has none).
_CHART = """(() => {
  const cards = [...document.querySelectorAll('[data-testid=experiment-view-compare-runs-card]')];
  const card = cards.find(c => c.innerText.trim().split('\\n')[0] === 'METRIC');
  if (!card) {
    if (cards.length) cards[cards.length - 1].scrollIntoView();
    return null;
  }
  card.scrollIntoView();
  const line = card.querySelector('.scatterlayer .js-line');
  if (!line) return null;
  const vertices = (line.getAttribute('d') || '').split(/[ML]/).filter(Boolean).length;
  const markers = card.querySelectorAll('.scatterlayer .point').length;
  const xtitle = card.querySelector('.xtitle');
  const points = Math.max(vertices, markers);
  return JSON.stringify({points, xtitle: xtitle && xtitle.textContent});
})()"""
