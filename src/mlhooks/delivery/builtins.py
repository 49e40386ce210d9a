"""The plugins mlhooks ships: the recorder and the local and in-memory stores.

They are registered like any third-party plugin, so the hook contract is the only way
in, for us as for everybody.
"""

from __future__ import annotations

from collections.abc import Callable

from mlhooks.backends.base import BackendFactory
from mlhooks.backends.local import LocalBackend
from mlhooks.backends.memory import MemoryBackend
from mlhooks.core.hookspecs import hookimpl
from mlhooks.core.host import RECORDER
from mlhooks.delivery.recorder import recorder


class BuiltinStores:
    """Offers the ``local`` and ``memory`` backends."""

    @hookimpl
    def register_backends(self, register: Callable[[str, BackendFactory], None]) -> None:
        register("local", LocalBackend)
        register("memory", MemoryBackend)


def builtin_plugins() -> list[tuple[str, object]]:
    return [(RECORDER, recorder), ("mlhooks.stores", BuiltinStores())]
