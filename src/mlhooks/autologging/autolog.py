"""``autolog()``: patch every installed framework, now or when it is imported.

Each integration is patched the moment its module is imported, whether that happens
before or after ``autolog()`` (wrapt's post-import hooks). ``autolog(disable=True)``
puts every original back. Calling ``autolog()`` again replaces the settings without
patching twice.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any, overload

import wrapt

from mlhooks.autologging.integration import Integration
from mlhooks.backends.base import Backend
from mlhooks.capture import context, system_metrics
from mlhooks.core import errors
from mlhooks.core.config import AutologConfig, current_config, set_current_config
from mlhooks.core.errors import report_internal_error, warn_once
from mlhooks.core.host import host
from mlhooks.core.options import FrameworkOptions, OptionsT, suggest
from mlhooks.delivery import selection, service_client

_watched: set[str] = set()
_lock = threading.RLock()
_DEFAULTS = AutologConfig()


def autolog(
    *,
    log_models: bool | None = None,
    log_datasets: bool | None = None,
    log_input_examples: bool | None = None,
    log_model_signatures: bool | None = None,
    disable: bool = False,
    exclusive: bool | None = None,
    silent: bool | None = None,
    extra_tags: Mapping[str, str] | None = None,
    backends: Iterable[str | Backend] | str | Backend | None = None,
    frameworks: Iterable[str] | str | None = None,
    log_every_n_steps: int | None = None,
    allow_unsupported: bool | None = None,
    log_context: bool | str | Iterable[str] | None = None,
    log_system_metrics: bool | None = None,
    registered_model_name: str | None = None,
    **framework_options: Mapping[str, Any],
) -> None:
    """Track every fit of every installed framework.

    Options left as None come from ``MLHOOKS_*`` variables, else the defaults.

    Args:
        log_models: log each fitted model (default True).
        log_datasets: log fingerprints of training and evaluation data (default True).
        log_input_examples: store a few input rows with each model (default False).
        log_model_signatures: store the model's input/output schema (default True).
        disable: undo all patches (or only those of ``frameworks``) and stop tracking.
        exclusive: do not log into runs the user opened (default False).
        silent: no mlhooks warnings during autologging (default False).
        extra_tags: tags added to every autologged run.
        backends: backend names or instances (default ``MLHOOKS_BACKENDS``, else
            ``mlflow`` when installed, else ``local``).
        frameworks: patch only these integrations (``"sklearn"``, ``"xgboost"``, ...).
        log_every_n_steps: step-level metrics every N steps (default: the framework's).
        allow_unsupported: patch frameworks outside their supported version range.
        log_context: which run context parts to capture at each run start (True: all,
            the default; False; or part names such as ``["git", "platform"]``).
        log_system_metrics: sample CPU, memory, disk, network and GPU as ``system/*``
            metrics while each run is active (default False; needs ``mlhooks[system]``).
        registered_model_name: register each fit's model under this name, a new
            version per fit, in backends that keep a model registry (MLflow).
        **framework_options: per-framework options, e.g. ``sklearn={"log_models":
            False, "max_tuning_runs": 5}``: the common ones above (``log_models``,
            ``log_datasets``, ``log_input_examples``, ``log_model_signatures``,
            ``exclusive``, ``extra_tags``, ``log_every_n_steps``,
            ``registered_model_name``) for this framework
            only, and those its integration declares. They are checked against that
            declaration: an unknown option or a value of the wrong type raises
            TypeError. For a framework no installed plugin integrates, only the common
            ones are checked, with one warning; the rest are checked if its
            integration registers later (it is not patched if they are wrong).
    """
    host.load()
    if isinstance(frameworks, str):
        frameworks = [frameworks]
    names = tuple(frameworks) if frameworks is not None else None
    with _lock:
        if disable:
            _disable(names)
            return
        _check_framework_options(framework_options)
        if isinstance(backends, (str, Backend)):
            backends = [backends]
        config = AutologConfig.resolve(
            log_models=log_models,
            log_datasets=log_datasets,
            log_input_examples=log_input_examples,
            log_model_signatures=log_model_signatures,
            exclusive=exclusive,
            silent=silent,
            extra_tags=dict(extra_tags) if extra_tags else None,
            backends=tuple(backends) if backends is not None else None,
            frameworks=names,
            log_every_n_steps=log_every_n_steps,
            allow_unsupported=allow_unsupported,
            log_context=_context_option(log_context),
            log_system_metrics=log_system_metrics,
            registered_model_name=registered_model_name,
            overrides=dict(framework_options) or None,
        )
        _check_overrides(config)  # a misspelt or mistyped option fails here, not mid-fit
        backends_used = selection.resolve(config.backends)  # an unknown one fails here
        context.resolve_parts(config.log_context)  # so do unknown context parts
        system_metrics.wanted(config.log_system_metrics)  # and a missing psutil
        set_current_config(config)
        errors.set_silent(config.silent)
        _warn_missing(config.frameworks)
        for integration in host.iter_integrations():
            _apply(integration)
        _warm_up(backends_used)


def _warm_up(backends: list[Backend]) -> None:
    """Have the writer service import the backends' libraries now, in its own process,
    rather than at the first fit (see :func:`.service_client.warm_up`)."""
    try:
        service_client.warm_up(backends)
    except Exception as error:  # noqa: BLE001 - a head start only: never fails autolog
        errors.report_internal_error("writer service warm-up", error)


def _context_option(option: bool | str | Iterable[str] | None) -> bool | tuple[str, ...] | None:
    if option is None or isinstance(option, bool):
        return option
    if isinstance(option, str):
        return tuple(sorted(context.resolve_parts(option)))
    return tuple(option)


def _check_framework_options(options: Mapping[str, Any]) -> None:
    """TypeError for a keyword that is neither an argument of autolog() nor a dict of
    a framework's options."""
    for name, value in options.items():
        if not isinstance(value, Mapping):
            as_dict = (
                "; per-framework options are given as a dict, e.g. "
                f"autolog({name}={{'log_models': False}})"
            )
            hint = "" if name in host.integrations else suggest(name, _arguments())
            raise TypeError(f"autolog() got an unknown option {name!r}{hint or as_dict}")


def _arguments() -> list[str]:
    parameters = inspect.signature(autolog).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_overrides(config: AutologConfig) -> None:
    """Check each framework's options against its integration's declaration."""
    for name in config.overrides:
        integration = host.integrations.get(name)
        if integration is not None:
            config.for_framework(name, integration.options)
            continue
        config.for_framework(name)  # its common options, at least
        installed = ", ".join(sorted(host.integrations)) or "none"
        hint = suggest(name, list(host.integrations)) or "."
        warn_once(
            f"missing-framework-options:{name}",
            f"mlhooks: autolog({name}={{...}}) gives options for {name!r}, which no installed "
            f"plugin integrates (installed: {installed}){hint} Options other than the "
            "common ones are checked if an integration of that name registers later.",
            stacklevel=4,
        )


def _warn_missing(frameworks: tuple[str, ...] | None) -> None:
    for name in frameworks or ():
        if name not in host.integrations:
            warn_once(
                f"missing-framework:{name}",
                f"mlhooks: autolog(frameworks=...) names {name!r}, but no installed plugin "
                f"integrates it (installed: {', '.join(sorted(host.integrations)) or 'none'})"
                f"{suggest(name, list(host.integrations))}",
            )


def _disable(names: tuple[str, ...] | None) -> None:
    for integration in host.iter_integrations():
        if names is None or integration.name in names:
            integration.unpatch()
    if names is None:
        set_current_config(None)
        errors.set_silent(False)
    elif (config := current_config()) is not None:
        current = config.frameworks or tuple(host.integrations)
        set_current_config(
            config.with_changes(frameworks=tuple(n for n in current if n not in names))
        )


def _wants(integration: Integration) -> bool:
    config = current_config()
    return config is not None and (
        config.frameworks is None or integration.name in config.frameworks
    )


def _apply(integration: Integration) -> None:
    """Patch ``integration`` now where its modules are imported, later where not."""
    with _lock:
        if not _wants(integration):
            integration.unpatch()
            return
        problem = _options_problem(integration)
        if problem is not None:
            warn_once(f"options:{integration.name}", f"mlhooks: not tracking {problem}")
            integration.unpatch()
            return
        for module_name in integration.modules:
            module = sys.modules.get(module_name)
            if module is not None:
                _patch(integration, module)
            elif module_name not in _watched:
                _watched.add(module_name)
                wrapt.register_post_import_hook(_on_import, module_name)


def _options_problem(integration: Integration) -> str | None:
    """What is wrong with the options autolog() was given for ``integration``: only
    possible for an integration registered after autolog() (which checks the others)."""
    config = current_config()
    assert config is not None
    try:
        config.for_framework(integration.name, integration.options)
    except (TypeError, ValueError) as error:
        return f"{integration.name}: {error}"
    return None


def _on_import(module: ModuleType) -> None:
    with _lock:
        _watched.discard(module.__name__)
        for integration in host.iter_integrations():
            if module.__name__ in integration.modules and _wants(integration):
                _patch(integration, module)


def _patch(integration: Integration, module: ModuleType) -> None:
    config = current_config()
    assert config is not None
    try:
        reason = integration.unsupported_reason()
        if reason is not None and not config.allow_unsupported:
            warn_once(
                f"unsupported:{integration.name}",
                f"mlhooks: not tracking {integration.name}: {reason} (supported: "
                f"{integration.supported_range()}); autolog(allow_unsupported=True) "
                "patches it anyway",
            )
            return
        integration.patch(module)
    except Exception as error:  # noqa: BLE001 - an import must never fail because of us
        report_internal_error(f"patching {integration.name} ({module.__name__})", error)


@overload
def settings_for(framework: str) -> FrameworkOptions: ...


@overload
def settings_for(framework: str, options: type[OptionsT]) -> OptionsT: ...


def settings_for(framework: str, options: type[FrameworkOptions] | None = None) -> FrameworkOptions:
    """The options ``framework`` sees now (the defaults when autolog() is off), as
    ``options``, else as the options class of its registered integration (the common
    options alone when none is registered):
    ``settings_for("sklearn", SklearnOptions).max_tuning_runs``."""
    if options is None:
        integration = host.integrations.get(framework)
        options = integration.options if integration is not None else None
    config = current_config() or _DEFAULTS
    return config.for_framework(framework, options) if options else config.for_framework(framework)


def is_enabled(framework: str | None = None) -> bool:
    config = current_config()
    if config is None:
        return False
    return framework is None or config.frameworks is None or framework in config.frameworks


host.on_new_integration(_apply)
