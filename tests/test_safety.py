"""The six safety rules of every patch, proved as properties on the throwaway
``fakefw`` integration (tests/fake_integration.py)."""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlhooks
import mlhooks.plugin
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.testing import RecordedRuns, reset_state

any_value = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
no_health = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def import_fakefw() -> ModuleType:
    return importlib.import_module("fakefw")


def original_attrs(module: ModuleType) -> dict[str, Any]:
    return {
        "Model.fit": vars(module.Model)["fit"],
        "Pipeline.fit": vars(module.Pipeline)["fit"],
        "train": vars(module)["train"],
    }


# -- rule 1: the original is called exactly once with the caller's arguments -----------


@pytest.mark.parametrize("fail_in", [None, "describe", "started", "finish"])
@no_health
@given(X=any_value, y=any_value)
def test_original_called_once_with_same_arguments(
    fake: Any, mlhooks_memory: RecordedRuns, lenient: None, fail_in: str | None, X: Any, y: Any
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    fake.integration.fit_handler.fail_in = fail_in
    fakefw.calls.clear()
    model = fakefw.Model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlhooksWarning)
        result = model.fit(X, y)
    assert result is model
    fits = [c for c in fakefw.calls if c[0] == "fit"]
    assert len(fits) == 1
    assert fits[0][1][0] is X and fits[0][1][1] is y


# -- rule 2: the original's exception propagates unchanged ---------------------------------


@pytest.mark.parametrize(
    "error", [ValueError("bad X"), KeyError("k"), KeyboardInterrupt(), SystemExit(3)]
)
def test_user_exception_is_the_same_object(
    fake: Any, mlhooks_memory: RecordedRuns, error: BaseException
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    with pytest.raises(type(error)) as raised:
        fakefw.Model().fit([1, 2], fail=error)
    assert raised.value is error
    assert raised.value.__traceback__ is not None
    expected = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
    assert mlhooks_memory.only_run().info.status is expected


# -- rule 3: our failures warn once and never reach the user ------------------------------


@pytest.mark.parametrize("fail_in", ["describe", "started", "finish"])
def test_our_failure_warns_once_and_returns_the_result(
    fake: Any, mlhooks_memory: RecordedRuns, lenient: None, fail_in: str
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    fake.integration.fit_handler.fail_in = fail_in
    with pytest.warns(MlhooksWarning, match=f"boom in {fail_in}") as caught:
        models = [fakefw.Model(rounds=2) for _ in range(3)]
        results = [m.fit([1.0]) for m in models]
    assert results == models
    assert all(m.history == [1.0, 0.5] for m in models)
    assert len([w for w in caught if issubclass(w.category, MlhooksWarning)]) == 1


def test_strict_mode_raises_our_errors(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    fake.integration.fit_handler.fail_in = "finish"
    with pytest.raises(RuntimeError, match="boom in finish"):
        fakefw.Model().fit([1.0])


def test_failing_listener_neither_breaks_training_nor_starves_others(
    fake: Any, mlhooks_memory: RecordedRuns, mlhooks_plugin: Any, lenient: None
) -> None:
    seen: list[str] = []

    class Broken:
        @mlhooks.hookimpl
        def on_fit_start(self, fit: mlhooks.plugin.Fit) -> None:
            raise ZeroDivisionError("listener bug")

    class Listener:
        @mlhooks.hookimpl
        def on_fit_start(self, fit: mlhooks.plugin.Fit) -> None:
            seen.append(fit.name)

    mlhooks_plugin(Listener())
    mlhooks_plugin(Broken())
    fakefw = import_fakefw()
    mlhooks.autolog()
    with pytest.warns(MlhooksWarning, match="listener bug"):
        fakefw.Model().fit([1.0])
    assert seen == ["Model"]
    assert mlhooks_memory.only_run().history("loss")


# -- rule 4: nested patched calls log once, at the outermost call ------------------------


def test_nested_calls_log_once(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    fakefw.Pipeline([fakefw.Model(), fakefw.Model(rounds=5)]).fit([1.0])
    run = mlhooks_memory.only_run()
    assert run.info.name == "Pipeline"
    assert [c[0] for c in fakefw.calls].count("train") == 2


def test_fit_inside_a_user_run_logs_there_and_leaves_it_open(
    fake: Any, mlhooks_memory: RecordedRuns
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    with mlhooks.start_run("mine") as run:
        fakefw.Model().fit([1.0])
        fakefw.train({"lr": 0.1}, [1.0])
        assert mlhooks.active_run() is run.info
        assert run.info.status is RunStatus.RUNNING
    stored = mlhooks_memory.only_run()
    assert stored.info.name == "mine"
    assert stored.params["rounds"] == "3"
    assert stored.info.status is RunStatus.FINISHED


def test_a_param_changed_by_a_later_fit_warns_and_keeps_the_first(
    fake: Any, mlhooks_memory: RecordedRuns
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    with mlhooks.start_run("mine"):
        fakefw.Model(lr=0.1).fit([1.0])
        with pytest.warns(MlhooksWarning, match="param 'lr' .* cannot change to '0.5'"):
            fakefw.Model(lr=0.5).fit([1.0])
    assert mlhooks_memory.only_run().params["lr"] == "0.1"


def test_exclusive_leaves_user_runs_alone(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog(exclusive=True)
    with mlhooks.start_run("mine"):
        fakefw.Model().fit([1.0])
    fakefw.Model().fit([1.0])
    runs = {r.info.name: r for r in mlhooks_memory.runs.values()}
    assert runs["mine"].params == {} and not runs["mine"].metrics
    assert runs["Model"].history("loss")


# -- rule 5: lazy, idempotent, exactly reversible -------------------------------------------

ORDERS = [
    ("import", "autolog"),
    ("autolog", "import"),
    ("autolog", "autolog", "import"),
    ("import", "autolog", "autolog"),
    ("autolog", "disable", "import"),
    ("import", "autolog", "disable"),
    ("autolog", "disable", "autolog", "import"),
    ("import", "autolog", "disable", "autolog"),
    ("autolog", "import", "disable", "disable"),
    ("disable", "import", "autolog"),
]


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_every_order_of_import_autolog_disable(
    fake: Any, mlhooks_memory: RecordedRuns, order: tuple[str, ...]
) -> None:
    module: ModuleType | None = None
    originals: dict[str, Any] = {}
    for action in order:
        if action == "import":
            module = import_fakefw()
            originals = original_attrs(module)
            if mlhooks.autologging.autolog.is_enabled():  # imported patched: originals are beneath
                originals = {k: v.__wrapped__ for k, v in originals.items()}
        elif action == "autolog":
            mlhooks.autolog()
        else:
            mlhooks.autolog(disable=True)
    assert module is not None
    last = {action: i for i, action in enumerate(order)}
    enabled = last.get("autolog", -1) > last.get("disable", -1)
    current = original_attrs(module)
    for name, original in originals.items():
        assert (current[name] is original) is not enabled, name
    module.Model().fit([1.0])
    assert len(mlhooks_memory.runs) == (1 if enabled else 0)
    mlhooks.autolog(disable=True)
    assert all(original_attrs(module)[k] is v for k, v in originals.items())


def test_disable_restores_identity_after_many_cycles(fake: Any) -> None:
    fakefw = import_fakefw()
    before = original_attrs(fakefw)
    for _ in range(5):
        mlhooks.autolog()
        mlhooks.autolog()
        mlhooks.autolog(disable=True)
    assert original_attrs(fakefw) == before
    assert all(original_attrs(fakefw)[k] is v for k, v in before.items())


def test_a_wrapper_kept_by_someone_passes_through_after_disable(
    fake: Any, mlhooks_memory: RecordedRuns
) -> None:
    fakefw = import_fakefw()
    mlhooks.autolog()
    kept = fakefw.train  # e.g. `from fakefw import train` while patched
    mlhooks.autolog(disable=True)
    assert kept({"lr": 1}, [1.0]) == [1.0, 0.5, 1.0 / 3]
    assert mlhooks_memory.runs == {}


def test_frameworks_selects_integrations(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    fakefw = import_fakefw()
    with pytest.warns(MlhooksWarning, match="names 'nope'"):
        mlhooks.autolog(frameworks=["nope"])
    fakefw.Model().fit([1.0])
    assert mlhooks_memory.runs == {}
    mlhooks.autolog(frameworks="fakefw")
    fakefw.Model().fit([1.0])
    assert len(mlhooks_memory.runs) == 1


def test_unregistering_the_plugin_unpatches(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    fakefw = import_fakefw()
    before = original_attrs(fakefw)
    mlhooks.autolog()
    mlhooks.unregister(fake)
    assert all(original_attrs(fakefw)[k] is v for k, v in before.items())


# -- rule 6: supported version ranges ------------------------------------------------------


@pytest.mark.parametrize("version", ["0.9.1", "2.0.0", "3.1"])
def test_unsupported_version_warns_once_and_is_skipped(
    fake: Any, mlhooks_memory: RecordedRuns, version: str
) -> None:
    fakefw = import_fakefw()
    fakefw.__version__ = version
    before = original_attrs(fakefw)
    with pytest.warns(MlhooksWarning, match=f"fakefw {version} is"):
        mlhooks.autolog()
    mlhooks.autolog()  # no second warning (the filter makes one an error)
    assert all(original_attrs(fakefw)[k] is v for k, v in before.items())
    mlhooks.autolog(allow_unsupported=True)
    fakefw.Model().fit([1.0])
    assert len(mlhooks_memory.runs) == 1


def test_patching_a_module_imported_in_a_thread(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    import threading

    mlhooks.autolog()
    done: list[ModuleType] = []
    thread = threading.Thread(target=lambda: done.append(import_fakefw()))
    thread.start()
    thread.join()
    done[0].Model().fit([1.0])
    assert len(mlhooks_memory.runs) == 1


def test_import_mlhooks_alone_patches_nothing(fake: Any) -> None:
    reset_state()
    fakefw = import_fakefw()
    assert "fakefw" in sys.modules
    assert not hasattr(vars(fakefw.Model)["fit"], "__wrapped__")
