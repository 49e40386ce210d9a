"""A pytest plugin for plugin authors (and for mlhooks' own tests).

Installed with mlhooks (entry point ``pytest11``); nothing here is autouse, so it
never touches a test that does not ask for it.

* ``mlhooks_clean``: autologging off, no open runs, warnings forgotten, the local
  store in a temporary folder, before and after the test.
* ``mlhooks_memory``: ``mlhooks_clean`` plus an in-memory backend that every run
  writes to; ``mlhooks_memory.flush()`` then read ``.runs`` / ``.only_run()``.
* ``mlhooks_plugin``: ``mlhooks_plugin(obj)`` registers a throwaway plugin that is
  unregistered after the test.

And helpers: :func:`run_script` (code in a fresh interpreter), :func:`wait_until`
(poll a condition) and :func:`train_by_hand` (a small real training logged with the
manual API, for tests of what reads runs back: needs numpy and scikit-learn).
:mod:`mlhooks.testing.contract` holds the safety rules as tests every integration
inherits (``IntegrationContract``, also in :mod:`mlhooks.plugin`).

May import: ``mlhooks.autologging``, ``mlhooks.tracking`` and every layer below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlhooks.autologging import autolog as autologging
from mlhooks.backends.memory import MemoryBackend
from mlhooks.capture import context
from mlhooks.core import errors
from mlhooks.core.host import host
from mlhooks.core.types import RunData
from mlhooks.delivery import selection
from mlhooks.delivery.journal import wait_for_services
from mlhooks.delivery.recorder import recorder
from mlhooks.tracking import runs


def reset_state() -> None:
    """Autologging off and every run ended: the state of a fresh ``import mlhooks``."""
    autologging.autolog(disable=True)
    while (run := runs.active_run()) is not None:
        runs.end_run(run=run, flush_timeout=10)
    recorder.flush(10)
    selection.forget()
    selection.set_default_override(None)
    errors.reset_warnings()
    context.forget()
    errors.set_silent(False)


def run_script(
    code: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    *,
    until_stored: bool = True,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh Python process with this environment plus
    ``env``; its output is captured as text. ``until_stored``: also wait for the writer
    service the script started, which goes on storing after the script exits."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if until_stored:
        cwd = Path(kwargs.get("cwd") or os.getcwd())
        root = Path(full_env.get("MLHOOKS_LOCAL_DIR") or "mlhooks-runs")
        if not wait_for_services(cwd / root, timeout):  # an absolute root stays as it is
            raise AssertionError(f"writer services under {cwd / root} still busy after {timeout}s")
    return done


def wait_until(condition: Callable[[], Any], timeout: float = 60) -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


def train_by_hand(
    name: str, eta0: float, backends: Any = None, epochs: int = 6
) -> tuple[str, dict[str, list[float]]]:
    """An SGD regression on sklearn's diabetes data, trained epoch by epoch in a run
    named ``name`` that logs ``eta0`` and per-epoch ``val_rmse`` and ``val_r2``.
    Returns the run id and the values logged."""
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import SGDRegressor
    from sklearn.preprocessing import StandardScaler

    from mlhooks.tracking import logging_api

    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    X_train, y_train, X_val, y_val = X[:300], y[:300], X[300:], y[300:]
    model = SGDRegressor(eta0=eta0, learning_rate="constant", random_state=0)
    logged: dict[str, list[float]] = {"val_rmse": [], "val_r2": []}
    with runs.start_run(name, backends=backends) as run:
        logging_api.log_params({"eta0": eta0, "model": "SGDRegressor", "epochs": epochs})
        for epoch in range(epochs):
            model.partial_fit(X_train, y_train)
            rmse = float(np.sqrt(np.mean((model.predict(X_val) - y_val) ** 2)))
            r2 = float(model.score(X_val, y_val))
            logged["val_rmse"].append(rmse)
            logged["val_r2"].append(r2)
            logging_api.log_metrics({"val_rmse": rmse, "val_r2": r2}, step=epoch)
    return run.run_id, logged


class RecordedRuns:
    """An in-memory backend that every run of the test writes to."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend

    def flush(self, timeout: float = 30) -> None:
        if not recorder.flush(timeout):
            raise AssertionError(f"mlhooks did not store everything within {timeout}s")

    @property
    def runs(self) -> dict[str, RunData]:
        self.flush()
        return self.backend.runs

    def only_run(self) -> RunData:
        self.flush()
        return self.backend.only_run()

    def run_named(self, name: str) -> RunData:
        matches = [run for run in self.runs.values() if run.info.name == name]
        if len(matches) != 1:
            raise AssertionError(f"expected one run named {name!r}, found {len(matches)}")
        return matches[0]


@pytest.fixture
def mlhooks_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean mlhooks around the test, with the local store under ``tmp_path``."""
    monkeypatch.setenv("MLHOOKS_LOCAL_DIR", str(tmp_path / "mlhooks-runs"))
    host.load()
    reset_state()
    errors.background_failures.clear()
    yield
    reset_state()
    failures, errors.background_failures[:] = list(errors.background_failures), []
    if failures:
        raise AssertionError("mlhooks' background writer failed:\n" + "\n".join(failures))


@pytest.fixture
def mlhooks_memory(mlhooks_clean: None) -> Iterator[RecordedRuns]:
    """Every run of the test goes to a fresh in-memory backend."""
    backend = MemoryBackend()
    selection.set_default_override([backend])
    yield RecordedRuns(backend)
    selection.set_default_override(None)


@pytest.fixture
def mlhooks_plugin(mlhooks_clean: None) -> Iterator[Callable[..., Any]]:
    """Register throwaway plugins for one test: ``mlhooks_plugin(obj, name=None)``."""
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> object:
        host.register(plugin, name=name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in reversed(registered):
        host.unregister(plugin)
