"""What a framework integration is: a name, the modules it patches, the versions it
supports, and a ``patch`` method. Third parties subclass :class:`Integration` exactly
as the built-in scikit-learn, XGBoost and Lightning plugins do."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from types import ModuleType
from typing import Any, ClassVar

from mlhooks.autologging.patching import CallHandler, Patcher
from mlhooks.core.options import FrameworkOptions, check_declaration


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release of ``text``: ``"2.1.0rc1"`` -> ``(2, 1, 0)``."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


class Integration:
    """Base class of framework integrations.

    Set ``name`` (what users pass to ``autolog(frameworks=...)``), ``modules`` (the
    modules whose import triggers :meth:`patch`), ``distribution`` (the installed
    package to read the version of) and the supported range ``min_version`` (inclusive)
    to ``max_version`` (exclusive). Implement :meth:`patch` with ``self.wrap(...)``.
    ``options`` declares what ``autolog(<name>={...})`` takes: a frozen dataclass
    subclassing :class:`~mlhooks.plugin.FrameworkOptions` (the common options only,
    by default).
    """

    name: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()
    distribution: ClassVar[str | None] = None
    min_version: ClassVar[str | None] = None
    max_version: ClassVar[str | None] = None
    options: ClassVar[type[FrameworkOptions]] = FrameworkOptions

    def __init__(self) -> None:
        if not self.name or not self.modules:
            raise TypeError(f"{type(self).__name__} must set `name` and `modules`")
        check_declaration(self.options)
        self.patcher = Patcher(self.name)
        self.plugin_name = ""
        """The plugin that registered this integration (set on registration)."""

    def patch(self, module: ModuleType) -> None:
        """Patch what ``module`` (one of ``modules``, just imported) defines."""
        raise NotImplementedError

    def wrap(self, owner: Any, attribute: str, handler: CallHandler) -> None:
        """Patch ``owner.<attribute>`` so that ``handler`` runs around each call. A
        :class:`~mlhooks.plugin.FitHandler` without a ``framework`` takes this integration's
        name, so that ``autolog(<name>={...})`` options reach it."""
        if getattr(handler, "framework", None) == "":
            handler.framework = self.name  # type: ignore[attr-defined]
        self.patcher.wrap(owner, attribute, handler)

    def unpatch(self) -> None:
        """Undo every patch of this integration."""
        self.patcher.unpatch_all()

    @property
    def is_patched(self) -> bool:
        return bool(self.patcher.patched)

    def installed_version(self) -> str | None:
        """The installed version of the framework, or None when it cannot be told."""
        top = self.modules[0].split(".")[0]
        try:
            return importlib.metadata.version(self.distribution or top)
        except importlib.metadata.PackageNotFoundError:
            version = getattr(sys.modules.get(top), "__version__", None)
            return version if isinstance(version, str) else None

    def unsupported_reason(self) -> str | None:
        """Why the installed version is outside the supported range, or None if inside."""
        version = self.installed_version()
        if version is None or (self.min_version is None and self.max_version is None):
            return None
        current = parse_version(version)
        if self.min_version is not None and current < parse_version(self.min_version):
            return f"{self.name} {version} is older than the supported {self.min_version}"
        if self.max_version is not None and current >= parse_version(self.max_version):
            return f"{self.name} {version} is newer than the supported {self.max_version}"
        return None

    def supported_range(self) -> str:
        low = f">={self.min_version}" if self.min_version else ""
        high = f"<{self.max_version}" if self.max_version else ""
        return ",".join(filter(None, (low, high))) or "any"
