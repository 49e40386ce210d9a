"""The plugin object behind the ``wandb`` entry point: it offers the backend.

Importing it is cheap: ``wandb`` is only imported when a W&B backend is built, that is
when a user chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlhooks

from .backend import WandbBackend


@mlhooks.hookimpl
def register_backends(register: Callable[[str, Any], None]) -> None:
    register("wandb", WandbBackend)
