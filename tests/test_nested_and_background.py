"""Two things an integration may need besides tracking the outermost call:
``CallHandler.nested`` (adjust the arguments of an inner patched call, e.g. hand it the
outer call's callback) and ``FitSession.in_background`` (slow work off the training
thread, reported as artifacts before the run's end)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import mlhooks
import mlhooks.plugin
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.autologging.patching import Patcher
from mlhooks.plugin import Call, CallHandler, FitHandler, FitSession
from mlhooks.testing import RecordedRuns, run_script, wait_until


class Library:
    """A framework whose ``fit`` calls ``train`` (as XGBoost's sklearn API does)."""

    def fit(self, data: list[float], callbacks: tuple[str, ...] = ()) -> list[Any]:
        return self.train(data, callbacks=callbacks)

    def train(self, data: list[float], callbacks: tuple[str, ...] = ()) -> list[Any]:
        return [sum(data), callbacks]


class Outer(CallHandler):
    def __init__(self) -> None:
        self.calls = 0

    def before(self, call: Call) -> None:
        self.calls += 1
        _hand_over.callback = "outer-callback"

    def after(self, call: Call, result: Any) -> None:
        _hand_over.callback = None


_hand_over = threading.local()


class Inner(CallHandler):
    def __init__(self, fail: bool = False) -> None:
        self.tracked = 0
        self.nested_calls = 0
        self.fail = fail

    def before(self, call: Call) -> None:
        self.tracked += 1

    def nested(self, call: Call) -> None:
        self.nested_calls += 1
        if self.fail:
            raise RuntimeError("boom in nested")
        callback = getattr(_hand_over, "callback", None)
        if callback is not None:
            given = call.kwargs.get("callbacks", ())
            call.kwargs = {**call.kwargs, "callbacks": (*given, callback)}


@pytest.fixture
def patched() -> Any:
    patcher = Patcher("library")
    outer, inner = Outer(), Inner()
    patcher.wrap(Library, "fit", outer)
    patcher.wrap(Library, "train", inner)
    yield outer, inner
    patcher.unpatch_all()


def test_nested_hook_adds_to_the_inner_call_without_touching_the_callers_arguments(
    patched: Any,
) -> None:
    outer, inner = patched
    mine = ("user-callback",)
    total, callbacks = Library().fit([1.0, 2.0], callbacks=mine)
    assert total == 3.0
    assert callbacks == ("user-callback", "outer-callback")
    assert mine == ("user-callback",)
    assert (outer.calls, inner.tracked, inner.nested_calls) == (1, 0, 1)


def test_an_outermost_call_does_not_run_the_nested_hook(patched: Any) -> None:
    _, inner = patched
    assert Library().train([1.0], callbacks=("a",)) == [1.0, ("a",)]
    assert (inner.tracked, inner.nested_calls) == (1, 0)


def test_a_failing_nested_hook_warns_once_and_the_call_gets_the_callers_arguments(
    lenient: None,
) -> None:
    patcher = Patcher("library")
    inner = Inner(fail=True)
    patcher.wrap(Library, "fit", Outer())
    patcher.wrap(Library, "train", inner)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [Library().fit([2.0], callbacks=("a",)) for _ in range(2)]
    finally:
        patcher.unpatch_all()
    assert results == [[2.0, ("a",)]] * 2
    ours = [w for w in caught if issubclass(w.category, MlhooksWarning)]
    assert len(ours) == 1 and "boom in nested" in str(ours[0].message)


def test_a_failing_nested_hook_raises_in_strict_mode() -> None:
    patcher = Patcher("library")
    patcher.wrap(Library, "fit", Outer())
    patcher.wrap(Library, "train", Inner(fail=True))
    try:
        with pytest.raises(RuntimeError, match="boom in nested"):
            Library().fit([2.0])
    finally:
        patcher.unpatch_all()


# -- background work ---------------------------------------------------------------------------


class SlowChart(FitHandler):
    framework = "charts"

    def __init__(self, gate: threading.Event, threads: list[str]) -> None:
        self.gate = gate
        self.threads = threads

    def describe(self, call: Call) -> tuple[str, dict[str, Any]]:
        return "chart-fit", {"n": len(call.args[0])}

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        total = result[0]  # captured now, as a plain value

        def render(directory: Path) -> None:
            self.threads.append(threading.current_thread().name)
            assert self.gate.wait(10)
            (directory / "total.json").write_text(f'{{"total": {total}}}')

        session.in_background(render, artifact_path="charts")


class Runner:
    """A framework that runs user code from inside its own patched call (as Optuna's
    ``Study.optimize`` runs the objective)."""

    def run(self, user_function: Any, isolate: bool) -> list[Any]:
        return [user_function() for _ in range(2)]


class RunnerHandler(CallHandler):
    """Wraps the user function so that its own patched calls are tracked (or not)."""

    def before(self, call: Call) -> None:
        function, isolate = call.args

        def in_user_code() -> Any:
            if not isolate:
                return function()
            with mlhooks.plugin.user_code():
                return function()

        call.args = (in_user_code, isolate)


@pytest.mark.parametrize("isolate", [True, False])
def test_user_code_inside_a_tracked_call_has_its_own_calls_tracked(isolate: bool) -> None:
    patcher = Patcher("library")
    inner = Inner()
    patcher.wrap(Runner, "run", RunnerHandler())
    patcher.wrap(Library, "train", inner)
    depths: list[int] = []

    def users_training() -> Any:
        result = Library().train([1.0, 2.0])
        depths.append(mlhooks.autologging.patching.tracking_depth())
        return result

    try:
        results = Runner().run(users_training, isolate)
        after = mlhooks.autologging.patching.tracking_depth()
    finally:
        patcher.unpatch_all()
    assert (inner.tracked, inner.nested_calls) == ((2, 0) if isolate else (0, 2))
    assert depths == ([0, 0] if isolate else [1, 1])
    assert [result[0] for result in results] == [3.0, 3.0]
    assert after == 0  # the guard is back as it was, outside the tracked call too


@pytest.fixture
def charted() -> Any:
    gate, threads = threading.Event(), []
    patcher = Patcher("charts")
    patcher.wrap(Library, "fit", SlowChart(gate, threads))
    yield gate, threads
    gate.set()
    patcher.unpatch_all()


def test_background_work_lands_before_the_run_end_without_blocking_training(
    mlhooks_memory: RecordedRuns, charted: Any
) -> None:
    gate, threads = charted
    Library().fit([1.0, 2.0])  # returns although the task waits for the gate
    assert mlhooks.active_run() is None  # the managed run left this thread's stack
    assert not mlhooks.flush(0.2)  # ... but is held until the task is done
    gate.set()
    run = mlhooks_memory.only_run()
    assert threads == ["mlhooks-tasks"]
    assert run.info.status is RunStatus.FINISHED
    assert run.artifacts == ["charts/total.json"]


def test_a_run_continued_while_its_end_is_held_keeps_its_lanes(
    mlhooks_memory: RecordedRuns, charted: Any
) -> None:
    """A managed run whose end waits for background work is started again (continued,
    as Optuna's second ``optimize`` does): its first end is not stored after the new
    start, and a child started once the work is done still lands."""
    gate, _ = charted
    Library().fit([1.0, 2.0])
    wait_until(lambda: mlhooks_memory.backend.runs)  # its start is stored
    (run_id,) = mlhooks_memory.backend.runs
    with mlhooks.start_run(run_id=run_id):
        gate.set()
        assert mlhooks.flush(30)  # the background work is done, its hold released
        with mlhooks.start_run("child", nested=True):
            mlhooks.log_metric("loss", 0.5)
        assert mlhooks_memory.backend.runs[run_id].info.status is RunStatus.RUNNING
    child = mlhooks_memory.run_named("child")
    assert [p.value for p in child.history("loss")] == [0.5]
    assert child.info.parent_id == run_id
    assert mlhooks_memory.backend.runs[run_id].info.status is RunStatus.FINISHED


def test_the_end_of_a_users_run_waits_for_its_background_work(
    mlhooks_memory: RecordedRuns, charted: Any
) -> None:
    gate, _ = charted
    threading.Timer(0.2, gate.set).start()
    with mlhooks.start_run("users-run"):
        Library().fit([3.0])
    run = mlhooks_memory.backend.runs[next(iter(mlhooks_memory.backend.runs))]
    assert run.artifacts == ["charts/total.json"]  # stored before end_run returned
    assert run.info.status is RunStatus.FINISHED


def test_a_failing_task_is_a_background_failure_and_the_run_still_ends(
    mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    class Broken(SlowChart):
        def finish(self, session: FitSession, call: Call, result: Any) -> None:
            def render(directory: Path) -> None:
                raise RuntimeError("boom in a task")

            session.in_background(render)

    patcher = Patcher("charts")
    patcher.wrap(Library, "fit", Broken(threading.Event(), []))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Library().fit([1.0])
            run = mlhooks_memory.only_run()
    finally:
        patcher.unpatch_all()
    assert run.info.status is RunStatus.FINISHED and run.artifacts == []
    assert any("boom in a task" in str(w.message) for w in caught)


def test_background_work_still_pending_at_exit_is_stored(tmp_path: Path) -> None:
    """A process that ends right after a fit: exit waits for the task, then its
    artifact and the run's end are stored, in that order."""
    result = run_script(
        """
        import time
        import mlhooks
        import mlhooks.plugin

        with mlhooks.start_run("at-exit") as run:
            pass
        session = mlhooks.plugin.FitSession("charts", "late", settings=None)
        session.start()

        def slow(directory):
            time.sleep(0.5)
            (directory / "late.txt").write_text("done")

        session.in_background(slow, artifact_path="late")
        session.end()
        print(session.fit.run.run_id)
        """,
        env={"MLHOOKS_LOCAL_DIR": str(tmp_path), "MLHOOKS_BACKENDS": "local"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    run = mlhooks.LocalStore(tmp_path).get_run(run_id)
    assert run.artifacts == ["late/late.txt"]
    assert run.info.status is RunStatus.FINISHED


def test_tasks_wait_while_another_fit_trains_unless_someone_flushes(
    mlhooks_memory: RecordedRuns,
) -> None:
    ran = threading.Event()
    training = FitSession("charts", "still-training")
    training.start()
    done = FitSession("charts", "done")
    done.start()
    done.in_background(lambda directory: ran.set(), artifact_path="charts")
    done.end()
    assert not ran.wait(0.5)  # the other fit still trains: the task waits
    training.end()
    assert ran.wait(10)  # ... and runs once no fit is running
    mlhooks_memory.flush()

    blocked = threading.Event()
    training = FitSession("charts", "training-again")
    training.start()
    late = FitSession("charts", "late")
    late.start()
    late.in_background(lambda directory: blocked.set())
    late.end()
    assert mlhooks.flush(10)  # a flush does not wait for the fit to end
    assert blocked.is_set()
    training.end()
