"""Finding, loading and calling plugins.

Plugins come from three places: the built-ins (the recorder and the local and memory
stores, registered like any other plugin), the ``mlhooks`` entry-point group, and
``mlhooks.register(obj)`` in user code.

Environment:

* ``MLHOOKS_PLUGINS=a,b``: load only these entry points (an allow-list).
* ``MLHOOKS_DISABLE_PLUGINS=a,b``: never load these entry points.

A plugin that fails to import or register gives one warning naming it and why; the
rest load as usual. Event hooks are called one implementation at a time, so that a
broken listener can neither stop training nor keep the event from the others.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pluggy

from mlhooks.core import hookspecs, settings
from mlhooks.core.errors import report_internal_error, warn_once

if TYPE_CHECKING:
    from mlhooks.autologging.integration import Integration
    from mlhooks.backends.base import BackendFactory

ENTRY_POINT_GROUP = "mlhooks"
RECORDER = "mlhooks.recorder"
SLOW_LISTENER_SECONDS = 1.0
"""A listener that holds up the thread reporting an event longer than this is slow."""
SLOW_CALLS_BEFORE_OFF = 3
"""A plugin whose listeners were slow this many times is switched off for the process."""

_EVENT_ARGS: dict[str, tuple[str, ...]] = {
    "on_run_start": ("run",),
    "on_run_end": ("run", "status"),
    "on_fit_start": ("fit",),
    "on_epoch_end": ("fit", "epoch", "step", "metrics"),
    "on_fit_end": ("fit",),
    "on_params": ("run", "params"),
    "on_tags": ("run", "tags"),
    "on_metrics": ("run", "metrics", "step", "timestamp"),
    "on_dataset": ("run", "dataset"),
    "on_model_saved": ("run", "model"),
    "on_artifact": ("run", "local_path", "artifact_path"),
}

_builtin_sources: list[Callable[[], list[tuple[str, object]]]] = []


def add_builtins(source: Callable[[], list[tuple[str, object]]]) -> None:
    """Have every host register the plugins ``source()`` names before entry points.

    The packages above the core call this once on import (``mlhooks/__init__.py``
    adds the recorder and the built-in stores), so the core never imports them."""
    if source not in _builtin_sources:
        _builtin_sources.append(source)


def _builtins() -> list[tuple[str, object]]:
    return [plugin for source in _builtin_sources for plugin in source()]


_nested = threading.local()
"""``.seconds``: time the listeners called inside the current listener took, so that a
listener that reports an event of its own is not blamed for its listeners' time."""

Listener = tuple[str, Callable[..., Any], tuple[str, ...] | None]
"""(plugin name, function, argument names or None when it takes them all in order)."""


class PluginHost:
    """The plugin manager plus the integrations and backends plugins registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.integrations: dict[str, Integration] = {}
        self.backends: dict[str, BackendFactory] = {}
        self._backend_owners: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        """Entry points that failed to load, with why."""
        self.offered_by: list[importlib.metadata.Distribution] = []
        """The distributions of the entry points found (loaded or not), once loaded:
        the run context names them with their versions without scanning again."""
        self._listeners: dict[str, list[Listener]] = {}
        self._calls: dict[str, list[tuple[str, Callable[..., Any]]]] = {}
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self._on_new_integration: list[Callable[[Integration], None]] = []
        self._slow_calls: dict[str, int] = {}
        self._switched_off: set[str] = set()
        self._on_backend_removed: list[Callable[[str], None]] = []

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Register the built-ins and every allowed entry point, once."""
        if self._loaded:
            return
        with self._lock:  # other threads wait here until every plugin is registered
            if self._is_loaded() or self._loading:  # done, or this thread re-entering
                return
            self._loading = True
            try:
                for name, plugin in _builtins():
                    self.register(plugin, name=name)
                self._load_entry_points()
            finally:
                self._loading = False
                self._loaded = True

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` ran (the entry points were read)."""
        return self._loaded

    def _is_loaded(self) -> bool:
        return self._loaded

    def _load_entry_points(self) -> None:
        allowed = set(settings.get("MLHOOKS_PLUGINS"))
        disabled = set(settings.get("MLHOOKS_DISABLE_PLUGINS"))
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.dist is not None:
                self.offered_by.append(entry_point.dist)
            name = entry_point.name
            if (allowed and name not in allowed) or name in disabled:
                continue
            if self.pm.has_plugin(name):
                continue  # two distributions offering one name: the first wins
            try:
                plugin = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure
                self._fail(name, f"import of {entry_point.value} failed: {error!r}")
                continue
            self.register(plugin, name=name)

    def _fail(self, name: str, why: str) -> None:
        self.failed[name] = why
        warn_once(f"plugin:{name}", f"mlhooks: plugin {name!r} was not loaded: {why}")

    # -- registration ---------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` and run its registration hooks; returns its name, or None
        when it could not be registered (one warning says why)."""
        with self._lock:
            label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if isinstance(plugin, type):
                self._fail(label, "a plugin is an instance or a module, not a class: pass it ()")
                return None
            try:
                registered = self.pm.register(plugin, name=name)
                self.pm.check_pending()  # a hook name that is not in the contract
            except Exception as error:  # noqa: BLE001 - a malformed plugin
                if self.pm.is_registered(plugin):
                    self.pm.unregister(plugin)
                self._fail(label, f"registration failed: {error}")
                return None
            if registered is None:
                return None
            self._forget_listeners()
            if not self._run_registration_hooks(plugin, registered):
                self.unregister(plugin)
                return None
            return registered

    def unregister(self, plugin: object) -> None:
        """Remove ``plugin``, its listeners, and the integrations and backends it offered."""
        with self._lock:
            name = self.pm.get_name(plugin)
            if name is None:
                return
            self.pm.unregister(plugin)
            self._slow_calls.pop(name, None)  # a plugin registered again starts afresh
            self._switched_off.discard(name)
            self._forget_listeners()
            owned = [k for k, v in self.integrations.items() if v.plugin_name == name]
            for key in owned:
                integration = self.integrations.pop(key)
                integration.unpatch()
            for key in [k for k, v in self._backend_owners.items() if v == name]:
                self.backends.pop(key, None)
                del self._backend_owners[key]
                for callback in self._on_backend_removed:
                    callback(key)

    def _forget_listeners(self) -> None:
        with self._lock:
            self._listeners = {}
            self._calls = {}

    def _run_registration_hooks(self, plugin: object, plugin_name: str) -> bool:
        """Run the plugin's registration hooks; False (one warning) when one raised."""

        def add_integration(integration: Integration) -> None:
            integration.plugin_name = plugin_name
            self.integrations[integration.name] = integration
            for callback in self._on_new_integration:
                callback(integration)

        def add_backend(name: str, factory: BackendFactory) -> None:
            declared = getattr(factory, "name", name) if isinstance(factory, type) else name
            if declared != name:
                raise ValueError(
                    f"backend registered as {name!r} names itself {declared!r}; the two must "
                    "match (spool files and `mlhooks sync` find backends by that name)"
                )
            self.backends[name] = factory
            self._backend_owners[name] = plugin_name

        for hook, callback in (
            ("register_integrations", add_integration),
            ("register_backends", add_backend),
        ):
            function = getattr(plugin, hook, None)
            if function is None or not self._is_impl(plugin, hook):
                continue
            try:
                function(register=callback)
            except Exception as error:  # noqa: BLE001 - a broken plugin
                self._fail(plugin_name, f"{hook} raised {error!r}")
                return False
        return True

    def _is_impl(self, plugin: object, hook: str) -> bool:
        return any(impl.plugin is plugin for impl in getattr(self.pm.hook, hook).get_hookimpls())

    def on_new_integration(self, callback: Callable[[Integration], None]) -> None:
        """Call ``callback`` for every integration registered from now on."""
        self._on_new_integration.append(callback)

    def on_backend_removed(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with the name of every backend whose plugin goes away."""
        self._on_backend_removed.append(callback)

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    # -- events ---------------------------------------------------------------------------

    def listeners(self, hook: str) -> list[Listener]:
        """The implementations of event ``hook``, in pluggy's calling order."""
        cached = self._listeners.get(hook)
        if cached is not None:
            return cached
        self.load()
        with self._lock:
            expected = _EVENT_ARGS[hook]
            found: list[Listener] = []
            for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
                if impl.plugin_name in self._switched_off:
                    continue
                if impl.hookwrapper or impl.wrapper:
                    warn_once(
                        f"wrapper:{impl.plugin_name}:{hook}",
                        f"mlhooks: plugin {impl.plugin_name!r} implements event hook "
                        f"{hook!r} as a wrapper, which event hooks do not support; ignored",
                    )
                    continue
                names = tuple(impl.argnames)
                found.append(
                    (impl.plugin_name, impl.function, None if names == expected else names)
                )
            self._listeners[hook] = found
            return found

    def calls(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        """(site, callable) for each implementation of event ``hook``; each callable
        takes the hookspec's arguments positionally. Call each in its own ``try``:
        see :meth:`emit`."""
        cached = self._calls.get(hook)
        if cached is None:
            self.load()
            with self._lock:
                cached = self._calls[hook] = [
                    (f"plugin {name!r} hook {hook}", self._timed(name, hook, function, names))
                    for name, function, names in self.listeners(hook)
                ]
        return cached

    def _timed(
        self, plugin: str, hook: str, function: Callable[..., Any], names: tuple[str, ...] | None
    ) -> Callable[..., Any]:
        """The listener as :meth:`calls` gives it: positional, and timed unless it is
        the built-in recorder (a listener slower than ``SLOW_LISTENER_SECONDS`` warns
        once; after ``SLOW_CALLS_BEFORE_OFF`` slow calls its plugin is switched off)."""
        call = self._positional(hook, function, names)
        if plugin == RECORDER:
            return call

        def timed(*args: Any) -> Any:
            outer = getattr(_nested, "seconds", None)
            _nested.seconds = 0.0  # time spent in events this listener reports itself
            start = time.perf_counter()
            try:
                return call(*args)
            finally:
                elapsed = time.perf_counter() - start
                own = elapsed - _nested.seconds
                _nested.seconds = elapsed + outer if outer is not None else None
                if own > SLOW_LISTENER_SECONDS:
                    self._slow(plugin, hook, own)

        return timed

    def _slow(self, plugin: str, hook: str, elapsed: float) -> None:
        with self._lock:
            count = self._slow_calls[plugin] = self._slow_calls.get(plugin, 0) + 1
            if count >= SLOW_CALLS_BEFORE_OFF:
                self._switched_off.add(plugin)
                self._forget_listeners()
        if count >= SLOW_CALLS_BEFORE_OFF:
            warn_once(
                f"slow-off:{plugin}",
                f"mlhooks: plugin {plugin!r} held up the thread reporting events for more "
                f"than {SLOW_LISTENER_SECONDS:g} s {count} times; its event hooks are "
                "switched off for this process",
            )
        else:
            warn_once(
                f"slow:{plugin}",
                f"mlhooks: plugin {plugin!r} took {elapsed:.1f} s in {hook}, holding up the "
                f"thread that reported it (training, for a fit's events); after "
                f"{SLOW_CALLS_BEFORE_OFF} such calls it is switched off",
            )

    def emit(self, hook: str, *args: Any) -> None:
        """Call every implementation of event ``hook`` with ``args`` (in the hookspec's
        order), each isolated: one that raises warns once (raises in strict mode), and
        the others, the recorder included, still get the event."""
        for site, call in self.calls(hook):
            try:
                call(*args)
            except Exception as error:  # noqa: BLE001 - isolate every listener
                report_internal_error(site, error)

    @staticmethod
    def _positional(
        hook: str, function: Callable[..., Any], names: tuple[str, ...] | None
    ) -> Callable[..., Any]:
        """``function`` callable with the hookspec's arguments in order."""
        if names is None:
            return function

        def call(*args: Any) -> Any:
            values = dict(zip(_EVENT_ARGS[hook], args, strict=True))
            return function(**{n: values[n] for n in names})

        return call

    def iter_integrations(self) -> Iterator[Integration]:
        return iter(list(self.integrations.values()))


host = PluginHost()
