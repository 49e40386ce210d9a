"""The plugin object behind the ``tensorboard`` entry point: it offers the backend.

Importing it is cheap: the event writer library is only imported by the backend's
writer thread, when the first run is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlhooks

from .backend import TensorBoardBackend


@mlhooks.hookimpl
def register_backends(register: Callable[[str, Any], None]) -> None:
    register("tensorboard", TensorBoardBackend)
