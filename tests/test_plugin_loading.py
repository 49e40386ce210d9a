"""Plugins found through the real ``importlib.metadata`` entry-point mechanism (a
``*.dist-info`` folder on ``sys.path``, no mocks), and plugins registered from user code.

Entry points are loaded into a fresh :class:`PluginHost`, so the global one is untouched.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunInfo, RunStatus
from mlhooks.core.errors import reset_warnings
from mlhooks.core.host import PluginHost
from mlhooks.core.host import host as global_host
from mlhooks.plugin import FitSession
from mlhooks.testing import RecordedRuns

BUILTIN_PLUGINS = {"mlhooks.recorder", "mlhooks.stores"}
BUILTIN_BACKENDS = {"local", "memory"}

DEMO = """
import mlhooks
from mlhooks.plugin import Integration
from mlhooks.backends.memory import MemoryBackend


class DemoBackend(MemoryBackend):
    name = "demo"


class DemoIntegration(Integration):
    name = "demoframework"
    modules = ("demoframework_is_never_installed",)

    def patch(self, module):
        raise AssertionError("never imported, never patched")


@mlhooks.hookimpl
def register_backends(register):
    register("demo", DemoBackend)


@mlhooks.hookimpl
def register_integrations(register):
    register(DemoIntegration())
"""

LISTENER = """
import mlhooks


class Listener:
    def __init__(self):
        self.runs = []

    @mlhooks.hookimpl
    def on_run_start(self, run):
        self.runs.append(run.name)


plugin = Listener()
"""

RAISES_AT_IMPORT = """
raise ImportError("mlhooks_pl_broken needs libfoo, which is not installed")
"""

REGISTER_RAISES = """
import mlhooks


@mlhooks.hookimpl
def register_backends(register):
    raise RuntimeError("no credentials configured")
"""

WRONG_ARGUMENT = """
import mlhooks


@mlhooks.hookimpl
def on_metrics(run, metric_values):
    pass
"""

Installer = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """``install(dist, {module: source}, {entry point: value})`` writes the modules and
    a ``<dist>-0.1.dist-info`` folder (``METADATA`` and an ``entry_points.txt`` with an
    ``[mlhooks]`` section) to a folder on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    modules: list[str] = []

    def install_(dist: str, sources: Mapping[str, str], entry_points: Mapping[str, str]) -> None:
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            sys.modules.pop(module, None)
            modules.append(module)
        # The folder is named after the normalized name: importlib.metadata reads the
        # name from it, up to the first "-", to tell distributions apart.
        dist_info = site / f"{re.sub(r'[-_.]+', '_', dist).lower()}-0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8"
        )
        lines = ["[mlhooks]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()

    monkeypatch.syspath_prepend(str(site))
    yield install_
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def demo(install: Installer) -> None:
    install("mlhooks-pl-demo", {"mlhooks_pl_demo": DEMO}, {"demo": "mlhooks_pl_demo"})


def loaded_host() -> PluginHost:
    host = PluginHost()
    host.load()
    return host


def assert_builtins_loaded(host: PluginHost) -> None:
    assert set(host.plugin_names()) >= BUILTIN_PLUGINS
    assert set(host.backends) >= BUILTIN_BACKENDS


def mlhooks_warnings(record: Any) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, MlhooksWarning)]


# -- entry points --------------------------------------------------------------------------


def test_an_entry_point_plugin_is_loaded_with_its_backend_and_integration(demo: None) -> None:
    host = loaded_host()
    module = sys.modules["mlhooks_pl_demo"]
    assert "demo" in host.plugin_names()
    assert host.pm.get_plugin("demo") is module
    assert host.backends["demo"] is module.DemoBackend
    integration = host.integrations["demoframework"]
    assert isinstance(integration, module.DemoIntegration)
    assert integration.plugin_name == "demo"
    assert not integration.is_patched
    assert host.failed == {}
    assert_builtins_loaded(host)
    assert "demo" not in mlhooks.list_plugins()  # the global host is untouched
    assert "demo" not in global_host.backends


def test_an_entry_point_may_name_an_object_in_a_module(install: Installer) -> None:
    install(
        "mlhooks-pl-listener",
        {"mlhooks_pl_listener": LISTENER},
        {"listener": "mlhooks_pl_listener:plugin"},
    )
    host = loaded_host()
    plugin = sys.modules["mlhooks_pl_listener"].plugin
    assert host.pm.get_plugin("listener") is plugin
    run = RunInfo(run_id="r1", name="first")
    host.emit("on_run_start", run)
    assert plugin.runs == ["first"]


def test_load_is_done_once(demo: None) -> None:
    host = loaded_host()
    names = host.plugin_names()
    host.load()
    assert host.plugin_names() == names


@pytest.mark.parametrize(
    ("allowed", "loaded"), [("other", False), ("other, demo", True), ("demo", True)]
)
def test_the_allow_list_keeps_other_entry_points_out(
    demo: None, monkeypatch: pytest.MonkeyPatch, allowed: str, loaded: bool
) -> None:
    monkeypatch.setenv("MLHOOKS_PLUGINS", allowed)
    host = loaded_host()
    assert ("demo" in host.plugin_names()) is loaded
    assert ("demo" in host.backends) is loaded
    assert host.failed == {}
    assert_builtins_loaded(host)  # the allow-list is about entry points only


@pytest.mark.parametrize("disabled", ["demo", "other,demo", " demo "])
def test_a_disabled_entry_point_is_not_loaded(
    demo: None, monkeypatch: pytest.MonkeyPatch, disabled: str
) -> None:
    monkeypatch.setenv("MLHOOKS_DISABLE_PLUGINS", disabled)
    host = loaded_host()
    assert "demo" not in host.plugin_names()
    assert "demo" not in host.backends and "demoframework" not in host.integrations
    assert host.failed == {}
    assert_builtins_loaded(host)


def test_disabling_wins_over_allowing(demo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_PLUGINS", "demo")
    monkeypatch.setenv("MLHOOKS_DISABLE_PLUGINS", "demo")
    assert "demo" not in loaded_host().plugin_names()


# -- broken plugins: one warning each, the rest loads -----------------------------------------


@pytest.mark.parametrize(
    ("sources", "value", "why"),
    [
        ({"mlhooks_pl_broken": RAISES_AT_IMPORT}, "mlhooks_pl_broken", "needs libfoo"),
        ({}, "mlhooks_pl_not_there", "ModuleNotFoundError"),
        ({"mlhooks_pl_broken": REGISTER_RAISES}, "mlhooks_pl_broken", "no credentials"),
        ({"mlhooks_pl_broken": WRONG_ARGUMENT}, "mlhooks_pl_broken", "metric_values"),
    ],
    ids=["import-raises", "module-missing", "register-hook-raises", "bad-hook-argument"],
)
def test_a_broken_plugin_warns_once_and_the_others_load(
    demo: None, install: Installer, sources: dict[str, str], value: str, why: str
) -> None:
    install("mlhooks-pl-broken", sources, {"broken": value})
    with pytest.warns(MlhooksWarning) as record:
        host = loaded_host()
    (message,) = mlhooks_warnings(record)
    assert "'broken'" in message and why in message
    assert why in host.failed["broken"]
    assert set(host.failed) == {"broken"}
    assert "demo" in host.plugin_names() and "demo" in host.backends
    assert_builtins_loaded(host)


def test_the_import_failure_names_the_entry_point_and_the_error(install: Installer) -> None:
    install(
        "mlhooks-pl-broken",
        {"mlhooks_pl_broken": RAISES_AT_IMPORT},
        {"broken": "mlhooks_pl_broken"},
    )
    with pytest.warns(MlhooksWarning, match="plugin 'broken' was not loaded"):
        host = loaded_host()
    assert host.failed["broken"].startswith("import of mlhooks_pl_broken failed: ImportError(")


def test_the_register_hook_failure_names_the_hook(install: Installer) -> None:
    install(
        "mlhooks-pl-broken", {"mlhooks_pl_broken": REGISTER_RAISES}, {"broken": "mlhooks_pl_broken"}
    )
    with pytest.warns(MlhooksWarning, match="plugin 'broken' was not loaded"):
        host = loaded_host()
    assert (
        "register_backends raised RuntimeError('no credentials configured')"
        in (host.failed["broken"])
    )


def test_each_host_warns_again_after_reset_warnings(install: Installer) -> None:
    install(
        "mlhooks-pl-broken",
        {"mlhooks_pl_broken": RAISES_AT_IMPORT},
        {"broken": "mlhooks_pl_broken"},
    )
    for _ in range(2):
        reset_warnings()
        with pytest.warns(MlhooksWarning) as record:
            loaded_host()
        assert len(mlhooks_warnings(record)) == 1


def test_a_broken_plugin_that_is_not_allowed_is_not_imported(
    install: Installer, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        "mlhooks-pl-broken",
        {"mlhooks_pl_broken": RAISES_AT_IMPORT},
        {"broken": "mlhooks_pl_broken"},
    )
    monkeypatch.setenv("MLHOOKS_DISABLE_PLUGINS", "broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MlhooksWarning)
        host = loaded_host()
    assert host.failed == {}
    assert "mlhooks_pl_broken" not in sys.modules


# -- plugins registered from user code (the global host) ----------------------------------


class RunListener:
    def __init__(self) -> None:
        self.started: list[str] = []

    @mlhooks.hookimpl
    def on_run_start(self, run: RunInfo) -> None:
        self.started.append(run.name)


def test_register_and_unregister_from_user_code(mlhooks_memory: RecordedRuns) -> None:
    listener = RunListener()
    name = mlhooks.register(listener, name="user-listener")
    try:
        assert name == "user-listener"
        assert "user-listener" in mlhooks.list_plugins()
        with mlhooks.start_run("first"):
            pass
        assert listener.started == ["first"]
    finally:
        mlhooks.unregister(listener)
    assert "user-listener" not in mlhooks.list_plugins()
    with mlhooks.start_run("second"):
        pass
    assert listener.started == ["first"]
    assert {run.info.name for run in mlhooks_memory.runs.values()} == {"first", "second"}
    mlhooks.unregister(listener)  # a second time does nothing


def test_register_without_a_name_returns_the_generated_one(mlhooks_memory: RecordedRuns) -> None:
    listener = RunListener()
    name = mlhooks.register(listener)
    try:
        assert name is not None and name in mlhooks.list_plugins()
    finally:
        mlhooks.unregister(listener)
    assert name not in mlhooks.list_plugins()


def test_unregister_removes_the_backends_and_integrations_a_plugin_offered(
    demo: None, mlhooks_memory: RecordedRuns
) -> None:
    module = importlib.import_module("mlhooks_pl_demo")
    mlhooks.register(module, name="demo-by-hand")
    try:
        assert global_host.backends["demo"] is module.DemoBackend
        assert "demoframework" in global_host.integrations
    finally:
        mlhooks.unregister(module)
    assert "demo" not in global_host.backends
    assert "demoframework" not in global_host.integrations
    with pytest.raises(ValueError, match="unknown backend 'demo'"):
        mlhooks.autolog(backends=["demo"])


def test_a_backend_used_by_name_is_gone_after_unregister(
    demo: None, mlhooks_memory: RecordedRuns
) -> None:
    module = importlib.import_module("mlhooks_pl_demo")
    mlhooks.register(module, name="demo-by-hand")
    try:
        assert isinstance(mlhooks.backend("demo"), module.DemoBackend)
    finally:
        mlhooks.unregister(module)
    with pytest.raises(ValueError, match="unknown backend 'demo'"):
        mlhooks.autolog(backends=["demo"])


def test_a_plugin_with_a_wrong_argument_is_refused_with_one_warning(
    install: Installer, mlhooks_memory: RecordedRuns
) -> None:
    install("mlhooks-pl-wrong", {"mlhooks_pl_wrong": WRONG_ARGUMENT}, {})
    module = importlib.import_module("mlhooks_pl_wrong")
    with pytest.warns(MlhooksWarning, match="metric_values") as record:
        assert mlhooks.register(module) is None
    assert len(mlhooks_warnings(record)) == 1
    assert "mlhooks_pl_wrong" not in mlhooks.list_plugins()
    mlhooks.log_metric("loss", 1.0)  # the event still works for everybody else
    assert mlhooks_memory.only_run().history("loss")


class Partial:
    """Event hooks that take a subset of the hookspec's arguments, some out of order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @mlhooks.hookimpl
    def on_metrics(self, metrics: Mapping[str, float]) -> None:
        self.calls.append(("on_metrics", dict(metrics)))

    @mlhooks.hookimpl
    def on_epoch_end(self, metrics: Mapping[str, float], epoch: int) -> None:
        self.calls.append(("on_epoch_end", (epoch, dict(metrics))))

    @mlhooks.hookimpl
    def on_run_end(self, status: RunStatus) -> None:
        self.calls.append(("on_run_end", status))

    @mlhooks.hookimpl
    def on_run_start(self) -> None:
        self.calls.append(("on_run_start", None))


def test_event_hooks_may_take_a_subset_of_the_arguments(
    mlhooks_memory: RecordedRuns, mlhooks_plugin: Any
) -> None:
    partial = mlhooks_plugin(Partial())
    with mlhooks.start_run("manual"):
        mlhooks.log_metric("loss", 0.5, step=1)
        mlhooks.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
    session = FitSession("demo", "fit")
    session.start()
    session.epoch_end(3, {"loss": 0.25})
    session.end()
    assert partial.calls == [
        ("on_run_start", None),
        ("on_metrics", {"loss": 0.5}),
        ("on_metrics", {"acc": 0.9, "f1": 0.8}),
        ("on_run_end", RunStatus.FINISHED),
        ("on_run_start", None),
        ("on_metrics", {"loss": 0.25}),  # epoch values reach metric listeners too
        ("on_epoch_end", (3, {"loss": 0.25})),
        ("on_run_end", RunStatus.FINISHED),
    ]
    stored = mlhooks_memory.run_named("fit")
    assert [(p.value, p.step) for p in stored.history("loss")] == [(0.25, 3)]


SLOW_TO_IMPORT = """
import time
import mlhooks
from mlhooks.backends.memory import MemoryBackend

time.sleep(0.5)  # another thread asks for the plugins meanwhile


class SlowBackend(MemoryBackend):
    name = "slow"


@mlhooks.hookimpl
def register_backends(register):
    register("slow", SlowBackend)
"""


def test_a_thread_that_asks_while_another_loads_waits_for_every_plugin(
    install: Installer,
) -> None:
    """Two threads need the plugins at once (the writer service starts a journal per
    backend, each on its thread): the second waits until every plugin is registered,
    instead of finding some backends missing."""
    install("mlhooks-pl-slow", {"mlhooks_pl_slow": SLOW_TO_IMPORT}, {"slow": "mlhooks_pl_slow"})
    host = PluginHost()
    first = threading.Thread(target=host.load)
    first.start()
    while "mlhooks_pl_slow" not in sys.modules:  # the first thread is importing it
        time.sleep(0.001)
    host.load()
    seen = set(host.backends)
    first.join()
    assert "slow" in seen
