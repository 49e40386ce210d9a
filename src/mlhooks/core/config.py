"""Autologging settings: ``autolog()`` arguments over ``MLHOOKS_*`` variables over defaults.

Options are named as MLflow users know them. Each framework sees the common options
merged with its own overrides: ``autolog(sklearn={"log_models": False})``; the
overrides may also carry options only that framework knows (``max_tuning_runs``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mlhooks.core import settings


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
    allow_unsupported: bool = False
    log_context: bool | tuple[str, ...] | None = None
    """Run context parts to capture (None: ``MLHOOKS_LOG_CONTEXT``, else all)."""
    log_system_metrics: bool | None = None
    """Sample ``system/*`` metrics (None: ``MLHOOKS_LOG_SYSTEM_METRICS``, else off)."""
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

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
        known = {f.name for f in fields(cls)}
        for name, value in given.items():
            if name not in known:
                raise TypeError(f"autolog() got an unknown option {name!r}")
            if value is not None:
                values[name] = value
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

    def for_framework(self, name: str) -> FrameworkSettings:
        """The options ``name`` sees: the common ones with its overrides on top."""
        base = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "overrides"}
        base.update(self.overrides.get(name, {}))
        return FrameworkSettings(name, base)

    def with_changes(self, **changes: Any) -> AutologConfig:
        return replace(self, **changes)


class FrameworkSettings(Mapping[str, Any]):
    """Read-only options of one framework: ``settings.log_models`` or
    ``settings.get("max_tuning_runs", 5)``."""

    def __init__(self, framework: str, values: dict[str, Any]) -> None:
        self.framework = framework
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no autolog option {key!r} for {self.framework}") from None

    def __repr__(self) -> str:
        return f"FrameworkSettings({self.framework!r}, {self._values!r})"


_current: AutologConfig | None = None


def current_config() -> AutologConfig | None:
    """What ``autolog()`` was last told, or None while autologging is off."""
    return _current


def set_current_config(config: AutologConfig | None) -> None:
    """Record what ``autolog()`` was told (None: autologging is off)."""
    global _current
    _current = config
