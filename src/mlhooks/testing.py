"""A pytest plugin for plugin authors (and for mlhooks' own tests).

Installed with mlhooks (entry point ``pytest11``); nothing here is autouse, so it
never touches a test that does not ask for it.

* ``mlhooks_clean``: autologging off, no open runs, warnings forgotten, the local
  store in a temporary folder, before and after the test.
* ``mlhooks_memory``: ``mlhooks_clean`` plus an in-memory backend that every run
  writes to; ``mlhooks_memory.flush()`` then read ``.runs`` / ``.only_run()``.
* ``mlhooks_plugin``: ``mlhooks_plugin(obj)`` registers a throwaway plugin that is
  unregistered after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import autologging, context, errors, runs, selection
from .backends.memory import MemoryBackend
from .plugins import host
from .recorder import recorder
from .types import RunData


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
