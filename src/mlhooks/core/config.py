"""Autologging settings: ``autolog()`` arguments over ``MLHOOKS_*`` variables over defaults.

Options are named as MLflow users know them. Each framework sees the common options
merged with its own overrides, ``autolog(sklearn={"log_models": False})``, as the
options dataclass its integration declares (:mod:`mlhooks.core.options`); the
overrides may also carry options only that framework knows (``max_tuning_runs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, overload

from mlhooks.core import settings
from mlhooks.core.options import FrameworkOptions, OptionsT, common_options, convert, option_types


@dataclass(frozen=True)
class AutologConfig:
    """Everything ``autolog()`` was told, resolved."""

    log_models: bool = True
    log_datasets: bool = True
    log_input_examples: bool = False
    log_model_signatures: bool = True
    exclusive: bool = False
    """Do not log into runs the user opened (only into runs mlhooks manages)."""
    silent: bool = False
    """No warnings or notices from mlhooks during autologging."""
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    backends: tuple[Any, ...] | None = None
    """Backend names or instances; None means the default (see ``mlhooks.backends``)."""
    frameworks: tuple[str, ...] | None = None
    """Integrations to patch; None means every installed one."""
    log_every_n_steps: int | None = None
    """Step-level metrics every N steps; None keeps each framework's own default."""
    registered_model_name: str | None = None
    """Register each fit's final model under this name (backends with a model registry)."""
    allow_unsupported: bool = False
    log_context: bool | tuple[str, ...] | None = None
    """Run context parts to capture (None: ``MLHOOKS_LOG_CONTEXT``, else all)."""
    log_system_metrics: bool | None = None
    """Sample ``system/*`` metrics (None: ``MLHOOKS_LOG_SYSTEM_METRICS``, else off)."""
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per framework: the options given as ``autolog(<framework>={...})``."""
    _resolved: dict[tuple[str, type[FrameworkOptions] | None], FrameworkOptions] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """What :meth:`for_framework` answered, per framework and options class."""

    _ENV = {
        "log_models": "MLHOOKS_LOG_MODELS",
        "log_datasets": "MLHOOKS_LOG_DATASETS",
        "log_input_examples": "MLHOOKS_LOG_INPUT_EXAMPLES",
        "log_model_signatures": "MLHOOKS_LOG_MODEL_SIGNATURES",
        "exclusive": "MLHOOKS_EXCLUSIVE",
        "silent": "MLHOOKS_SILENT",
        "allow_unsupported": "MLHOOKS_ALLOW_UNSUPPORTED",
        "backends": "MLHOOKS_BACKENDS",
        "frameworks": "MLHOOKS_FRAMEWORKS",
        "log_every_n_steps": "MLHOOKS_LOG_EVERY_N_STEPS",
    }

    @classmethod
    def resolve(cls, **given: Any) -> AutologConfig:
        """Arguments that are not None win; then ``MLHOOKS_*`` variables; then defaults."""
        values: dict[str, Any] = {}
        for name, variable in cls._ENV.items():
            if settings.is_set(variable) and (value := settings.get(variable)) is not None:
                values[name] = value
        known = {f.name for f in fields(cls) if f.init}
        common = option_types(FrameworkOptions)
        for name, value in given.items():
            if name not in known:
                raise TypeError(f"autolog() got an unknown option {name!r}")
            if value is not None:
                values[name] = (
                    convert("autolog()", name, value, common[name]) if name in common else value
                )
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.log_every_n_steps is not None and self.log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be at least 1, not {self.log_every_n_steps}")
        for framework, options in self.overrides.items():
            if not isinstance(options, Mapping):
                raise TypeError(
                    f"autolog({framework}=...) takes a dict of options, "
                    f"not {type(options).__name__}"
                )

    @overload
    def for_framework(self, name: str) -> FrameworkOptions: ...

    @overload
    def for_framework(self, name: str, options: type[OptionsT]) -> OptionsT: ...

    def for_framework(
        self, name: str, options: type[FrameworkOptions] | None = None
    ) -> FrameworkOptions:
        """The options ``name`` sees: the common ones with its overrides on top, checked
        against ``options``, the declaration of its integration (TypeError for an
        unknown option or a wrong type, ValueError for a value it refuses).

        Without a declaration (no installed integration has that name) the common
        options are checked and returned; the others cannot be, and wait in
        :attr:`overrides` for an integration of that name to register."""
        key = (name, options)
        resolved = self._resolved.get(key)
        if resolved is None:
            given = dict(self.overrides.get(name, {}))
            for option in given:
                _check_not_global(name, option)
            if options is None:
                given = {k: v for k, v in given.items() if k in common_options()}
            common = {option: getattr(self, option) for option in common_options()}
            resolved = (options or FrameworkOptions).build(name, given, base=common)
            self._resolved[key] = resolved
        return resolved

    def with_changes(self, **changes: Any) -> AutologConfig:
        return replace(self, **changes)


_GLOBAL_OPTIONS = frozenset(
    f.name for f in fields(AutologConfig) if f.init and f.name not in common_options()
) - {"overrides"}
"""``autolog()`` options that are not per framework (``backends``, ``silent``, ...)."""


def _check_not_global(framework: str, option: str) -> None:
    """TypeError when ``autolog(<framework>={option: ...})`` names a global option."""
    if option == "disable":
        raise TypeError(
            f"autolog({framework}={{...}}) got 'disable': to stop tracking {framework}, "
            f"call autolog(disable=True, frameworks=[{framework!r}])"
        )
    if option in _GLOBAL_OPTIONS:
        raise TypeError(
            f"autolog({framework}={{...}}) got {option!r}, which applies to every "
            f"framework: pass it as autolog({option}=...)"
        )


_current: AutologConfig | None = None


def current_config() -> AutologConfig | None:
    """What ``autolog()`` was last told, or None while autologging is off."""
    return _current


def set_current_config(config: AutologConfig | None) -> None:
    """Record what ``autolog()`` was told (None: autologging is off)."""
    global _current
    _current = config
