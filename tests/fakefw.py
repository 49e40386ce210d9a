"""A tiny "framework" for the core tests: a model class, a train function, nesting.

It stands for scikit-learn (``Model.fit``), XGBoost (``train`` per round) and the
nesting they do (``Model.fit`` calling ``train``, ``Pipeline`` calling steps).
"""

from __future__ import annotations

from typing import Any

__version__ = "1.4.0"

calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []


class Model:
    def __init__(self, rounds: int = 3, lr: float = 0.1) -> None:
        self.rounds = rounds
        self.lr = lr
        self.history: list[float] = []

    def get_params(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "lr": self.lr}

    def fit(self, X: Any, y: Any = None, *, fail: BaseException | None = None) -> Model:
        calls.append(("fit", (X, y), {"fail": fail}))
        if fail is not None:
            raise fail
        self.history = train({"lr": self.lr}, X, rounds=self.rounds)
        return self


class Pipeline(Model):
    """A meta-estimator: its fit calls its steps' fits."""

    def __init__(self, steps: list[Model]) -> None:
        super().__init__()
        self.steps = steps

    def fit(self, X: Any, y: Any = None, *, fail: BaseException | None = None) -> Pipeline:
        calls.append(("pipeline.fit", (X, y), {}))
        for step in self.steps:
            step.fit(X, y)
        return self


def train(params: dict[str, Any], data: Any, rounds: int = 3) -> list[float]:
    calls.append(("train", (params, data), {"rounds": rounds}))
    return [1.0 / (r + 1) for r in range(rounds)]
