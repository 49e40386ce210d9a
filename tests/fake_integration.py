"""A throwaway integration of ``fakefw``, written as a third-party plugin would be."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import mlhooks
from mlhooks.plugin import Call, FitHandler, FitSession, FrameworkOptions, Integration


@dataclass(frozen=True)
class FakeOptions(FrameworkOptions):
    """What ``autolog(fakefw={...})`` takes besides the common options."""

    max_tuning_runs: int | None = None
    log_final_loss: bool = True
    loss_name: Literal["loss", "error"] = "loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tuning_runs is not None and self.max_tuning_runs < 0:
            raise ValueError(f"max_tuning_runs must be at least 0, not {self.max_tuning_runs}")


class FitModel(FitHandler):
    framework = "fakefw"
    fail_in: str | None = None
    """Make our own code fail: "describe", "started" or "finish"."""

    def describe(self, call: Call) -> tuple[str, dict[str, Any]]:
        if self.fail_in == "describe":
            raise RuntimeError("boom in describe")
        return type(call.instance).__name__, call.instance.get_params()

    def started(self, session: FitSession, call: Call) -> None:
        if self.fail_in == "started":
            raise RuntimeError("boom in started")
        session.log_dataset(call.args[0], name="X")

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        if self.fail_in == "finish":
            raise RuntimeError("boom in finish")
        options = FakeOptions.of(session.settings)
        for epoch, loss in enumerate(result.history):
            session.epoch_end(epoch, {options.loss_name: loss})
        if options.log_final_loss:
            session.log_metrics({"final_loss": result.history[-1] if result.history else 0.0})
        session.log_model(result, name="model")


class Train(FitHandler):
    framework = "fakefw"

    def describe(self, call: Call) -> tuple[str, dict[str, Any]]:
        return "train", dict(call.args[0])


class FakeIntegration(Integration):
    name = "fakefw"
    modules = ("fakefw",)
    distribution = "fakefw-not-installed"
    min_version = "1.0"
    max_version = "2.0"
    options = FakeOptions

    def __init__(self) -> None:
        super().__init__()
        self.fit_handler = FitModel()

    def patch(self, module: ModuleType) -> None:
        self.wrap(module.Model, "fit", self.fit_handler)
        self.wrap(module.Pipeline, "fit", self.fit_handler)
        self.wrap(module, "train", Train())


class FakePlugin:
    """The plugin object: offers the integration through the registration hook."""

    def __init__(self) -> None:
        self.integration = FakeIntegration()

    @mlhooks.hookimpl
    def register_integrations(self, register: Any) -> None:
        register(self.integration)
