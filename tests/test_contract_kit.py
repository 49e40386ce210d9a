"""The shared integration contract (mlhooks.testing.contract), run on ``fakefw``: the
same tests every framework plugin runs on its real framework."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_integration import FakePlugin
from mlhooks.testing.contract import IntegrationContract

TESTS = Path(__file__).parent


class TestFakeContract(IntegrationContract):
    framework = "fakefw"
    modules = ("fakefw",)
    targets = ("fakefw:Model.fit", "fakefw:Pipeline.fit", "fakefw:train")
    setup_code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from fake_integration import FakePlugin\n"
        "mlhooks.register(FakePlugin())"
    )
    fit_code = "import fakefw; fakefw.Model().fit([1.0])"
    emits_epochs = True  # FitModel reports each round of the history

    @pytest.fixture(autouse=True)
    def plugin(self, fake: FakePlugin) -> Iterator[FakePlugin]:
        yield fake

    def fit(self) -> Any:
        import fakefw

        return fakefw.Model(rounds=4).fit([1.0]).history

    def fit_epochs(self) -> int:
        import fakefw

        fakefw.Model(rounds=5).fit([1.0])
        return 5

    def fit_raising(self, error: BaseException) -> None:
        import fakefw

        fakefw.Model().fit([1.0], fail=error)

    def break_integration(self, monkeypatch: pytest.MonkeyPatch) -> None:
        handler = sys.modules["fake_integration"].FitModel

        def broken(*args: Any) -> None:
            raise RuntimeError(self.boom_message)

        monkeypatch.setattr(handler, "finish", broken)
