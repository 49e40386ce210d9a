"""Plugins that raise, hang or return garbage (issue 13, item 9): what a plugin returns
is checked before use, a slow listener is named and then switched off, and tracking
goes on either way."""

from __future__ import annotations

import time
from typing import Any

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunInfo
from mlhooks.core import host as host_module
from mlhooks.testing import RecordedRuns


class OffersGarbage:
    @mlhooks.hookimpl
    def find_active_run(self) -> Any:
        return "run-42"  # not a RunInfo


class Raises:
    @mlhooks.hookimpl
    def on_metrics(self, run: RunInfo, metrics: dict[str, float]) -> None:
        raise RuntimeError("a listener's bug")


class Sleeps:
    calls = 0

    @mlhooks.hookimpl
    def on_metrics(self, run: RunInfo, metrics: dict[str, float]) -> None:
        Sleeps.calls += 1
        time.sleep(0.3)


def test_a_find_active_run_that_returns_garbage_is_ignored_with_one_warning(
    mlhooks_memory: RecordedRuns, mlhooks_plugin: Any, lenient: None
) -> None:
    mlhooks_plugin(OffersGarbage())
    with pytest.warns(MlhooksWarning, match="find_active_run returned str .*ignored") as caught:
        mlhooks.log_metric("loss", 0.5)  # opens a run of mlhooks' own, as without plugin
        mlhooks.log_metric("loss", 0.25, step=1)
        mlhooks.end_run()
    assert len(caught) == 1
    mlhooks_memory.flush()
    assert [m.value for m in mlhooks_memory.only_run().history("loss")] == [0.5, 0.25]


def test_a_listener_that_raises_leaves_the_others_and_the_store_alone(
    mlhooks_memory: RecordedRuns, mlhooks_plugin: Any, lenient: None
) -> None:
    mlhooks_plugin(Raises())
    with pytest.warns(MlhooksWarning, match="a listener's bug") as caught:
        with mlhooks.start_run("kept"):
            for step in range(3):
                mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
    assert len(caught) == 1
    assert len(mlhooks_memory.only_run().history("loss")) == 3


def test_a_slow_listener_is_named_then_switched_off(
    mlhooks_memory: RecordedRuns,
    mlhooks_plugin: Any,
    lenient: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host_module, "SLOW_LISTENER_SECONDS", 0.2)  # 1 s in real use
    Sleeps.calls = 0
    mlhooks_plugin(Sleeps(), name="sleepy")
    with pytest.warns(MlhooksWarning) as caught, mlhooks.start_run("slowed"):
        for step in range(6):
            mlhooks.log_metric("loss", float(step), step=step)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "plugin 'sleepy' took 0.3 s in on_metrics" in messages[0]
    assert "plugin 'sleepy' held up" in messages[1] and "switched off" in messages[1]
    assert Sleeps.calls == 3, "the listener was called after it was switched off"
    assert len(mlhooks_memory.only_run().history("loss")) == 6  # the store got every point


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict mode off: these are the warnings users see."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")


def test_a_listener_is_not_blamed_for_the_listeners_of_the_events_it_reports(
    mlhooks_memory: RecordedRuns,
    mlhooks_plugin: Any,
    lenient: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listener whose hook reports an event of its own (as the scikit-learn plugin
    stores a model at a run's end) is timed without the listeners of that event."""
    monkeypatch.setattr(host_module, "SLOW_LISTENER_SECONDS", 0.2)

    class Reports:
        @mlhooks.hookimpl
        def on_tags(self, run: RunInfo, tags: dict[str, str]) -> None:
            if "report" in tags:
                mlhooks.log_metric("reported", 1.0)

    Sleeps.calls = 0
    mlhooks_plugin(Reports(), name="reporter")
    mlhooks_plugin(Sleeps(), name="sleepy")
    with pytest.warns(MlhooksWarning) as caught, mlhooks.start_run("nested"):
        mlhooks.set_tag("report", "yes")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "plugin 'sleepy'" in messages[0]
