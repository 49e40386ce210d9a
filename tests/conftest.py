"""Shared setup of the core tests: strict mode, a clean mlhooks around every test."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fake_integration import FakePlugin

# Our own errors must fail our tests, not hide behind a warning.
os.environ.setdefault("MLHOOKS_STRICT", "1")
# Run context capture (tags and an artifact on every run) has its own tests
# (test_context.py); elsewhere it would only blur what the tests compare.
os.environ.setdefault("MLHOOKS_LOG_CONTEXT", "0")
# The core is tested alone: installed plugins (mlhooks-mlflow, ...) are not loaded here;
# each plugin's own tests run them. Plugins the tests install themselves still load.
os.environ["MLHOOKS_DISABLE_PLUGINS"] = ",".join(
    entry_point.name for entry_point in importlib.metadata.entry_points(group="mlhooks")
)


@pytest.fixture(autouse=True)
def _clean_mlhooks(mlhooks_clean: None) -> Iterator[None]:
    yield


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn strict mode off: for tests of what users see when our code fails."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")


@pytest.fixture
def fake(mlhooks_plugin: Any) -> Iterator[FakePlugin]:
    """The throwaway ``fakefw`` integration, registered; ``fakefw`` not yet imported."""
    sys.modules.pop("fakefw", None)
    fakefw_calls_reset()
    plugin = mlhooks_plugin(FakePlugin(), name="fakefw-plugin")
    yield plugin
    sys.modules.pop("fakefw", None)


def fakefw_calls_reset() -> None:
    import fakefw

    fakefw.calls.clear()
    sys.modules.pop("fakefw", None)
