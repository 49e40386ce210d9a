"""The lifecycle every ``FitHandler`` runs: track or not, the session, ``started``, the
original, ``finish``, the end, ``ended``; on ``fakefw`` with a handler that records
which of its steps ran."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.plugin import Call, FitHandler, FitSession, Integration, RunInfo, open_run
from mlhooks.testing import RecordedRuns
from mlhooks.testing.contract import EventLog


class Steps(FitHandler):
    """Records each step it is asked to run, and whether a run was active then."""

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.tracking = True
        self.fail_in: str | None = None
        self.run: RunInfo | None = None
        """Given: sessions log into this run instead of the active or a managed one."""

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if self.fail_in == name:
            raise RuntimeError(f"boom in {name}")

    def track(self, call: Call) -> bool:
        self._step("track")
        return self.tracking

    def new_session(self, call: Call) -> FitSession:
        self._step("new_session")
        return FitSession(
            self.framework,
            "steps",
            params={"lr": call.instance.lr},
            tags={"handler": "steps"},
            run=self.run,
        )

    def started(self, session: FitSession, call: Call) -> None:
        self._step("started")

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        self._step("finish")
        session.log_metrics({"rounds_run": len(result.history)})

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        active = mlhooks.active_run()
        self.steps.append(("ended", active.name if active else None, error))


class StepsIntegration(Integration):
    name = "fakefw"
    modules = ("fakefw",)
    distribution = "fakefw-not-installed"

    def __init__(self) -> None:
        super().__init__()
        self.handler = Steps()

    def patch(self, module: ModuleType) -> None:
        self.wrap(module.Model, "fit", self.handler)


class StepsPlugin:
    def __init__(self) -> None:
        self.integration = StepsIntegration()

    @mlhooks.hookimpl
    def register_integrations(self, register: Any) -> None:
        register(self.integration)


@pytest.fixture
def steps(mlhooks_plugin: Any) -> Iterator[Steps]:
    sys.modules.pop("fakefw", None)
    plugin = mlhooks_plugin(StepsPlugin(), name="steps-plugin")
    yield plugin.integration.handler
    sys.modules.pop("fakefw", None)


@pytest.fixture
def events(mlhooks_plugin: Any) -> EventLog:
    log = EventLog()
    mlhooks_plugin(log, name="events")
    return log


def fakefw() -> ModuleType:
    mlhooks.autolog()
    return importlib.import_module("fakefw")


def test_the_steps_run_in_order_around_a_fit(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns
) -> None:
    model = fakefw().Model(rounds=4).fit([1.0])
    assert model.history == [1.0, 0.5, 1 / 3, 0.25]
    assert steps.steps == ["track", "new_session", "started", "finish", ("ended", None, None)]
    run = mlhooks_memory.only_run()
    assert run.info.status is RunStatus.FINISHED  # ended: after the managed run ended
    assert run.params == {"lr": "0.1"}
    assert run.tags["handler"] == "steps"
    assert run.latest() == {"rounds_run": 4.0}
    assert len(events.fits()) == 1


def test_a_call_it_does_not_track_runs_as_if_unpatched(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns
) -> None:
    steps.tracking = False
    model = fakefw().Model(rounds=2).fit([1.0])
    assert model.history == [1.0, 0.5]
    assert steps.steps == ["track"]
    assert mlhooks_memory.runs == {}
    assert events.events == []


def test_a_session_that_is_not_active_runs_no_step(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns
) -> None:
    framework = fakefw()
    mlhooks.autolog(exclusive=True)
    with mlhooks.start_run("users-run"):
        model = framework.Model(rounds=2).fit([1.0])
    assert model.history == [1.0, 0.5]
    assert steps.steps == ["track", "new_session"]
    run = mlhooks_memory.only_run()
    assert run.info.name == "users-run" and run.params == {} and not run.metrics
    assert events.events == []


def test_the_originals_error_ends_the_fit_then_reaches_ended(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns
) -> None:
    error = ValueError("raised by user code")
    with pytest.raises(ValueError) as raised:
        fakefw().Model().fit([1.0], fail=error)
    assert raised.value is error
    assert steps.steps == ["track", "new_session", "started", ("ended", None, error)]
    assert mlhooks_memory.only_run().info.status is RunStatus.FAILED
    (fit,) = events.fits()
    assert fit.error is error


def test_when_started_fails_the_original_runs_untracked(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    steps.fail_in = "started"
    with pytest.warns(MlhooksWarning, match="boom in started"):
        model = fakefw().Model(rounds=2).fit([1.0])
    assert model.history == [1.0, 0.5]
    assert steps.steps == ["track", "new_session", "started"]  # neither finish nor ended
    assert mlhooks_memory.only_run().info.status is RunStatus.FINISHED  # no run left open
    assert mlhooks.active_run() is None
    assert len(events.fits()) == 1  # started and ended


def test_when_finish_fails_the_fit_still_ends_and_ended_runs(
    steps: Steps, events: EventLog, mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    steps.fail_in = "finish"
    with pytest.warns(MlhooksWarning, match="boom in finish"):
        model = fakefw().Model(rounds=2).fit([1.0])
    assert model.history == [1.0, 0.5]
    assert steps.steps == ["track", "new_session", "started", "finish", ("ended", None, None)]
    assert mlhooks_memory.only_run().info.status is RunStatus.FINISHED
    assert len(events.fits()) == 1


@pytest.mark.parametrize("failing", ["track", "new_session"])
def test_when_deciding_fails_the_original_runs_untracked(
    steps: Steps, mlhooks_memory: RecordedRuns, lenient: None, failing: str
) -> None:
    steps.fail_in = failing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fakefw().Model(rounds=2).fit([1.0])
    assert model.history == [1.0, 0.5]
    assert [str(w.message) for w in caught if w.category is MlhooksWarning]
    assert steps.steps[-1] == failing
    assert mlhooks_memory.runs == {}


def test_a_session_may_log_into_a_run_of_the_handlers_own(
    steps: Steps, mlhooks_memory: RecordedRuns
) -> None:
    loop = open_run("loop", managed=True, activate=False)
    steps.run = loop.info
    framework = fakefw()
    for rounds in (1, 2, 3):
        framework.Model(rounds=rounds).fit([1.0])
    assert loop.info.status is RunStatus.RUNNING  # the handler's run: not ended by a fit
    assert [step for step in steps.steps if isinstance(step, tuple)] == [("ended", None, None)] * 3
    mlhooks.end_run(run=loop.info)
    run = mlhooks_memory.only_run()
    assert run.info.name == "loop"
    assert [point.value for point in run.history("rounds_run")] == [1.0, 2.0, 3.0]
