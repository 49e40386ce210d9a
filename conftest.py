"""Checks for the test folders pytest roots at the checkout (``tests`` and ``faults``;
a plugin's folder has its own pytest settings, and so its own root).

The suite leaves the checkout as it found it (``.ci/run`` checks it for every folder,
at the end): a test or a script it starts that writes into the working directory
(``./mlruns`` of a new MLflow store, ``./mlflow.db``, ``./mlhooks-runs``) while that is
the checkout, not its ``tmp_path``, fails here, named, rather than at the end of a CI
run. What a writer service stores after its script ended may be blamed on a later
test, and with several pytest processes at once on a test of another folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TOOL_CACHES = {
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".import_linter_cache",
    ".nox",
    "__pycache__",
}
"""What tools, not the tests, may add to the checkout's top folder."""


def _top_level() -> set[str]:
    return {entry.name for entry in ROOT.iterdir()} - TOOL_CACHES


@pytest.fixture(autouse=True)
def _checkout_untouched() -> Iterator[None]:
    """Fail the test after which something new is in the checkout's top folder (it, or
    a test running beside it in another process, wrote into the checkout)."""
    before = _top_level()
    yield
    new = sorted(_top_level() - before)
    if new:
        pytest.fail(
            f"new in the checkout ({ROOT}) after this test: {', '.join(new)}; a test and the "
            "scripts it starts must write under its tmp_path (monkeypatch.chdir(tmp_path) "
            "for what lands in the working directory)",
            pytrace=False,
        )
