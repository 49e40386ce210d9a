"""The plugin object behind the ``tensorboard`` entry point: it offers the backend.

Importing it is cheap: the event writer library (tensorboardX) is only imported when
a TensorBoard backend is built, that is when a user chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlhooks

from .backend import TensorBoardBackend


@mlhooks.hookimpl
def register_backends(register: Callable[[str, Any], None]) -> None:
    register("tensorboard", TensorBoardBackend)
