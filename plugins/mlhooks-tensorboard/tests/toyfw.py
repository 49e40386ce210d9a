"""A tiny training "framework" for these tests: a model whose fit trains for some
epochs (it stands for the real frameworks, whose plugins test TensorBoard later)."""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"


class Regressor:
    def __init__(self, epochs: int = 3, lr: float = 0.25, solver: str = "sgd") -> None:
        self.epochs = epochs
        self.lr = lr
        self.solver = solver
        self.history: list[float] = []

    def get_params(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "lr": self.lr, "solver": self.solver}

    def fit(self, X: list[list[float]], y: list[float]) -> Regressor:
        self.history = [1.0 / (epoch + 2) for epoch in range(self.epochs)]
        return self
