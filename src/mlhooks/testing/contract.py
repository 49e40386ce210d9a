"""The safety contract every framework integration must keep, as reusable tests.

A plugin's test suite subclasses :class:`IntegrationContract`, says what it patches and
how to run one small real fit, and inherits tests that prove the safety rules on the
real framework::

    class TestSklearnContract(IntegrationContract):
        framework = "sklearn"
        modules = ("sklearn.linear_model",)
        targets = ("sklearn.linear_model._ridge:Ridge.fit",)
        fit_code = "from sklearn.linear_model import Ridge; Ridge().fit([[0.], [1.]], [0., 1.])"

        def fit(self): ...
        def fit_raising(self, error): ...
        def break_integration(self, monkeypatch): ...

The import-order tests run each order in a fresh interpreter, so the framework is
really imported before or after ``autolog()``. A listener (:class:`EventLog`) checks
that the integration emits the events the hookspecs promise: ``on_fit_start`` and
``on_fit_end`` once per tracked fit and, for an integration that trains in steps
(``emits_epochs = True`` and :meth:`IntegrationContract.fit_epochs`), ``on_epoch_end``
for each epoch, in order, its values stored once.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlhooks.autologging import autolog as autologging
from mlhooks.core.errors import MlhooksWarning
from mlhooks.core.hookspecs import hookimpl
from mlhooks.core.types import Fit, RunStatus
from mlhooks.testing import RecordedRuns

#: Orders of ``import`` (the framework), ``autolog`` and ``disable`` the contract runs.
ORDERS: tuple[tuple[str, ...], ...] = (
    ("import", "autolog"),
    ("autolog", "import"),
    ("autolog", "autolog", "import"),
    ("autolog", "disable", "import"),
    ("import", "autolog", "disable"),
    ("import", "autolog", "disable", "autolog"),
    ("disable", "import", "autolog"),
)


def resolve_target(target: str) -> tuple[Any, str]:
    """``"pkg.module:Owner.attr"`` -> (the owner object, ``"attr"``)."""
    module_name, _, dotted = target.partition(":")
    *owner_path, attribute = dotted.split(".")
    owner: Any = importlib.import_module(module_name)
    for part in owner_path:
        owner = getattr(owner, part)
    if attribute not in vars(owner):
        raise AttributeError(f"{target}: {owner!r} does not define {attribute!r} itself")
    return owner, attribute


def current_value(target: str) -> Any:
    owner, attribute = resolve_target(target)
    return vars(owner)[attribute]


@dataclass(frozen=True)
class Epoch:
    """One ``on_epoch_end`` event, as :class:`EventLog` heard it."""

    fit: Fit
    epoch: int
    step: int
    metrics: dict[str, float]


class EventLog:
    """A listener that keeps the fit events it hears (``on_fit_start``,
    ``on_epoch_end``, ``on_fit_end``) and checks they come as the hookspecs promise."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Fit, Epoch | None]] = []

    @hookimpl
    def on_fit_start(self, fit: Fit) -> None:
        self.events.append(("start", fit, None))

    @hookimpl
    def on_epoch_end(self, fit: Fit, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("epoch", fit, Epoch(fit, epoch, step, dict(metrics))))

    @hookimpl
    def on_fit_end(self, fit: Fit) -> None:
        self.events.append(("end", fit, None))

    def clear(self) -> None:
        self.events.clear()

    def fits(self) -> list[Fit]:
        """The fits heard, in the order they started, after checking that each one
        started once and ended once, and had its epochs in between."""
        state: dict[int, str] = {}
        fits: list[Fit] = []
        for kind, fit, _ in self.events:
            seen = state.get(id(fit))
            if kind == "start":
                assert seen is None, f"on_fit_start twice for {fit.name!r}"
                fits.append(fit)
                state[id(fit)] = "running"
            else:
                assert seen is not None, f"on_{kind}_end for {fit.name!r} before on_fit_start"
                assert seen == "running", f"on_{kind}_end for {fit.name!r} after on_fit_end"
                if kind == "end":
                    state[id(fit)] = "ended"
        running = [fit.name for fit in fits if state[id(fit)] == "running"]
        assert not running, f"no on_fit_end for {running}"
        return fits

    def epochs(self) -> list[Epoch]:
        return [epoch for kind, _, epoch in self.events if epoch is not None]


class IntegrationContract:
    """Subclass, fill in the class attributes and the three methods; pytest does the rest.

    An integration that trains in steps sets ``emits_epochs = True`` and implements
    :meth:`fit_epochs` too."""

    framework: ClassVar[str] = ""
    """The integration's name, as in ``autolog(frameworks=[...])``."""
    modules: ClassVar[tuple[str, ...]] = ()
    """What "import the framework" means in the import-order tests."""
    targets: ClassVar[tuple[str, ...]] = ()
    """Patched attributes as ``"module:Owner.attr"``, the owner being the object that
    defines the attribute. The first is what :meth:`fit` calls outermost."""
    fit_code: ClassVar[str] = ""
    """Python source doing one small tracked fit, run in a fresh interpreter after the
    framework was imported."""
    setup_code: ClassVar[str] = ""
    """Python source run first in that interpreter (e.g. to register a plugin that
    is not installed as an entry point)."""
    user_errors: ClassVar[tuple[type[BaseException], ...]] = (ValueError, KeyboardInterrupt)
    """Exceptions :meth:`fit_raising` is asked to raise from user code."""
    boom_message: ClassVar[str] = "contract boom"
    """What the error :meth:`break_integration` provokes says."""
    tracked_fits: ClassVar[int] = 1
    """How many fits one call of :meth:`fit` tracks."""
    emits_epochs: ClassVar[bool] = False
    """Whether the integration trains in steps (epochs, boosting rounds, ``partial_fit``
    calls) and reports each through ``on_epoch_end``: then :meth:`fit_epochs` runs."""

    # -- what a plugin implements ------------------------------------------------------------

    def fit(self) -> Any:
        """One small real fit; returns something :meth:`same_result` can compare."""
        raise NotImplementedError

    def fit_raising(self, error: BaseException) -> None:
        """A real fit during which the user's own code raises ``error``."""
        raise NotImplementedError

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the integration's own code raise ``RuntimeError(boom_message)`` during a fit."""
        raise NotImplementedError

    def same_result(self, first: Any, second: Any) -> bool:
        """Whether two results of :meth:`fit` are the same training outcome."""
        return bool(first == second)

    def fit_epochs(self) -> int:
        """With ``emits_epochs``: a real training of a few epochs (at least two), in
        one fit or in several (a ``partial_fit`` loop); returns how many
        ``on_epoch_end`` events it must give."""
        raise NotImplementedError

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture
    def recorded(
        self, mlhooks_memory: RecordedRuns, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[RecordedRuns]:
        """Strict mode and an in-memory backend; autologging off afterwards."""
        monkeypatch.setenv("MLHOOKS_STRICT", "1")
        for module in self.modules:
            importlib.import_module(module)
        yield mlhooks_memory
        autologging.autolog(disable=True)

    @pytest.fixture
    def events(self, recorded: RecordedRuns, mlhooks_plugin: Callable[..., Any]) -> EventLog:
        """A listener registered for the test."""
        log = EventLog()
        mlhooks_plugin(log, name="contract-events")
        return log

    # -- rule 1: the original runs once and its result is unchanged ------------------------

    def test_original_called_once_and_result_unchanged(self, recorded: RecordedRuns) -> None:
        untracked = self.fit()
        owner, attribute = resolve_target(self.targets[0])
        original = vars(owner)[attribute]
        calls: list[int] = []

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return original(*args, **kwargs)

        setattr(owner, attribute, counting)
        try:
            autologging.autolog()
            tracked = self.fit()
        finally:
            autologging.autolog(disable=True)
            setattr(owner, attribute, original)
        assert len(calls) == 1, f"{self.targets[0]} ran {len(calls)} times for one fit"
        assert self.same_result(untracked, tracked), "tracking changed the training outcome"
        runs = recorded.runs
        assert runs, "the fit was not tracked"
        assert all(run.info.status is RunStatus.FINISHED for run in runs.values())

    # -- rule 2: the user's exception propagates unchanged ------------------------------------

    def test_user_exception_is_the_same_object(self, recorded: RecordedRuns) -> None:
        autologging.autolog()
        for error_type in self.user_errors:
            error = error_type("raised by user code")
            with pytest.raises(error_type) as raised:
                self.fit_raising(error)
            assert raised.value is error
        statuses = {run.info.status for run in recorded.runs.values()}
        assert statuses, "the failing fits were not tracked"
        assert statuses <= {RunStatus.FAILED, RunStatus.KILLED}, statuses

    # -- rule 3: our failures warn once and training goes on ----------------------------------

    def test_our_failure_warns_once_and_training_goes_on(
        self, recorded: RecordedRuns, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        untracked = self.fit()
        monkeypatch.setenv("MLHOOKS_STRICT", "0")
        self.break_integration(monkeypatch)
        autologging.autolog()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [self.fit(), self.fit()]
        assert all(self.same_result(untracked, result) for result in results)
        ours = [w for w in caught if issubclass(w.category, MlhooksWarning)]
        assert len(ours) == 1, [str(w.message) for w in ours]
        assert self.boom_message in str(ours[0].message)

    def test_strict_mode_raises_our_errors(
        self, recorded: RecordedRuns, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.break_integration(monkeypatch)
        autologging.autolog()
        with pytest.raises(RuntimeError, match=self.boom_message):
            self.fit()

    # -- a fit inside the user's run logs there -------------------------------------------------

    def test_fit_inside_a_user_run_logs_there_and_leaves_it_open(
        self, recorded: RecordedRuns
    ) -> None:
        import mlhooks

        autologging.autolog()
        with mlhooks.start_run("users-run") as run:
            self.fit()
            assert mlhooks.active_run() is run.info
        mine = [r for r in recorded.runs.values() if r.info.name == "users-run"]
        assert len(mine) == 1 and mine[0].info.status is RunStatus.FINISHED
        assert mine[0].params or mine[0].metrics, "nothing was logged into the user's run"

    # -- the events the hookspecs promise -------------------------------------------------------

    def test_listeners_hear_each_fit_start_and_end_once(self, events: EventLog) -> None:
        autologging.autolog()
        self.fit()
        fits = events.fits()
        assert len(fits) == self.tracked_fits, [fit.name for fit in fits]
        assert all(fit.error is None for fit in fits), [fit.error for fit in fits]

        events.clear()
        error = self.user_errors[0]("raised by user code")
        with pytest.raises(type(error)):
            self.fit_raising(error)
        fits = events.fits()
        assert fits, "the failing fit was not tracked"
        assert fits[0].error is error, "on_fit_end did not carry the user's exception"

    def test_listeners_hear_each_epoch(self, recorded: RecordedRuns, events: EventLog) -> None:
        if not self.emits_epochs:
            pytest.skip("the integration does not train in steps (emits_epochs is False)")
        autologging.autolog()
        expected = self.fit_epochs()
        assert expected >= 2, "fit_epochs() should train for at least two epochs"
        events.fits()  # every epoch inside its fit
        epochs = events.epochs()
        assert len(epochs) == expected, [(e.epoch, e.step) for e in epochs]
        for before, after in itertools.pairwise(epochs):
            assert after.epoch > before.epoch, "epochs must increase"
            assert after.step > before.step, "steps must increase"
        runs = recorded.runs
        for epoch in epochs:
            run = runs[epoch.fit.run.run_id]
            for key, value in epoch.metrics.items():
                stored = [p.value for p in run.history(key) if p.step == epoch.step]
                assert len(stored) == 1, f"{key} at step {epoch.step} stored {len(stored)} times"
                assert stored[0] == value or (math.isnan(stored[0]) and math.isnan(value))

    # -- rule 5: exactly reversible, in every order ---------------------------------------------

    def test_disable_restores_identity(self, recorded: RecordedRuns) -> None:
        originals = {target: current_value(target) for target in self.targets}
        for _ in range(3):
            autologging.autolog()
            autologging.autolog()
            for target, original in originals.items():
                assert current_value(target) is not original, f"{target} was not patched"
            autologging.autolog(disable=True)
            for target, original in originals.items():
                assert current_value(target) is original, f"{target} was not restored"

    @pytest.mark.parametrize("order", ORDERS, ids="-".join)
    def test_every_order_of_import_autolog_disable(
        self, order: tuple[str, ...], tmp_path: Path
    ) -> None:
        script = _ORDER_SCRIPT.format(
            setup=self.setup_code,
            modules=self.modules,
            targets=self.targets,
            order=order,
            fit=textwrap.indent(textwrap.dedent(self.fit_code), "    "),
        )
        env = {
            **os.environ,
            "MLHOOKS_BACKENDS": "memory",
            "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"),
            "MLHOOKS_STRICT": "1",
        }
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        enabled = outcome["enabled"]
        assert outcome["patched"] == [enabled] * len(self.targets), outcome
        assert (outcome["fits"] > 0) is enabled, outcome
        assert outcome["restored"] == [True] * len(self.targets), outcome


_ORDER_SCRIPT = """
import importlib, json
import mlhooks
from mlhooks.testing.contract import current_value
{setup}

fits = []

class CountFits:
    @mlhooks.hookimpl
    def on_fit_start(self, fit):
        fits.append(fit.name)

mlhooks.register(CountFits())
modules, targets, order = {modules!r}, {targets!r}, {order!r}
originals = None
for action in order:
    if action == "import":
        for name in modules:
            importlib.import_module(name)
        values = [current_value(t) for t in targets]
        if mlhooks.autologging.autolog.is_enabled():  # imported patched: the originals are beneath
            values = [v.__wrapped__ for v in values]
        originals = values
    elif action == "autolog":
        mlhooks.autolog()
    else:
        mlhooks.autolog(disable=True)
enabled = mlhooks.autologging.autolog.is_enabled()
patched = [current_value(t) is not o for t, o in zip(targets, originals)]
if True:
{fit}
mlhooks.flush()
mlhooks.autolog(disable=True)
restored = [current_value(t) is o for t, o in zip(targets, originals)]
print(json.dumps(dict(enabled=enabled, patched=patched, fits=len(fits), restored=restored)))
"""
