"""The entry point: the Optuna integration and what it patches.

Patched when ``optuna`` is imported (never imported from here):

* ``Study.optimize``: the study's run, a child run per trial (the objective is wrapped,
  and a callback of ours, first in the list, reports each finished trial);
* ``Trial.report``: each intermediate value, as the trial reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import mlhooks
from mlhooks.plugin import Integration

from .options import OptunaOptions


class OptunaIntegration(Integration):
    name = "optuna"
    modules = ("optuna",)
    min_version = "4.0"
    max_version = "6.0"
    options = OptunaOptions

    def patch(self, module: ModuleType) -> None:
        from optuna.study.study import Study  # being imported anyway
        from optuna.trial import Trial

        from . import optimize

        self.wrap(Study, "optimize", optimize.OptimizeFit())
        self.wrap(Trial, "report", optimize.ReportHandler())


@mlhooks.hookimpl
def register_integrations(register: Callable[[Integration], None]) -> None:
    register(OptunaIntegration())
