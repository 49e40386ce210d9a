"""An integration of ``toyfw``, written as a framework plugin would be: params, one
metric point per epoch, a dataset fingerprint and the model, through a FitSession."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import mlhooks
from mlhooks.plugin import Call, FitHandler, FitSession, Integration


class FitRegressor(FitHandler):
    framework = "toyfw"

    def describe(self, call: Call) -> tuple[str, dict[str, Any]]:
        return type(call.instance).__name__, call.instance.get_params()

    def started(self, session: FitSession, call: Call) -> None:
        session.log_dataset(call.args[0], name="X")

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        for epoch, loss in enumerate(result.history):
            session.epoch_end(epoch, {"loss": loss})
        session.log_model(result, name="model")


class ToyIntegration(Integration):
    name = "toyfw"
    modules = ("toyfw",)
    distribution = "toyfw-not-installed"

    def patch(self, module: ModuleType) -> None:
        self.wrap(module.Regressor, "fit", FitRegressor())


class ToyPlugin:
    @mlhooks.hookimpl
    def register_integrations(self, register: Any) -> None:
        register(ToyIntegration())
