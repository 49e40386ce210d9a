"""The entry point: the Ray Tune integration and what it patches.

Patched when ``ray.tune`` is imported (never imported from here): ``tune.run``, under
the three names it is called by (``ray.tune.run``, ``ray.tune.tune.run`` and the one
``Tuner.fit`` calls, ``ray.tune.impl.tuner_internal.run``), each with the same handler:
the sweep's run in the driver, each trial's run in its worker (see :mod:`.sweep`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import mlhooks
from mlhooks.plugin import Integration

from .options import RayOptions


class RayTuneIntegration(Integration):
    name = "ray"
    modules = ("ray.tune",)
    distribution = "ray"
    min_version = "2.40"
    max_version = "3.0"
    options = RayOptions

    def patch(self, module: ModuleType) -> None:
        from ray.tune import tune  # ``module`` is ray.tune, being imported
        from ray.tune.impl import tuner_internal

        from . import sweep

        handler = sweep.SweepFit(vars(tune)["run"])
        for owner in (tune, module, tuner_internal):
            self.wrap(owner, "run", handler)


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(RayTuneIntegration())
