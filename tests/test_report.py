"""The HTML report, opened in headless Chromium: its rendered text, its curves, and run
names and params holding markup that stay inert text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import mlhooks
from mlhooks.testing import train_by_hand

EVIL_NAME = "<script>document.title='pwned'</script><b id=\"injected\">bold</b>"
EVIL_PARAM = "<img src=x onerror=\"document.title='pwned'\">"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium; .ci/run installs it)"
    )


def dump_dom(page: Path, tmp_path: Path) -> str:
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible_text(dom: str) -> str:
    """The text of the rendered DOM, tags removed and entities decoded."""
    import html

    body = dom.split("<body>", 1)[-1]
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


@pytest.fixture
def report(tmp_path: Path) -> Path:
    evil_id, _ = train_by_hand(EVIL_NAME, 0.01, backends="local")
    with mlhooks.start_run("plain", backends="local") as plain:
        mlhooks.log_params({"eta0": EVIL_PARAM, "epochs": 6})
        for step in range(6):
            mlhooks.log_metrics({"val_rmse": 1.0 / (step + 1)}, step=step)
    path = tmp_path / "report.html"
    mlhooks.write_report([evil_id, plain.run_id], path, backend="local")
    return path


def test_the_report_is_self_contained_and_escaped(report: Path) -> None:
    page = report.read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert 'src="http' not in page and "href=" not in page  # nothing fetched
    assert page.count('src="data:image/svg+xml;base64,') == 2  # val_rmse and val_r2


def test_chromium_renders_names_as_text(report: Path, tmp_path: Path) -> None:
    dom = dump_dom(report, tmp_path)
    title = re.search(r"<title>(.*?)</title>", dom, re.DOTALL)
    assert title is not None and title.group(1) == "Comparison of 2 runs"  # unchanged
    assert "<script" not in dom.lower()  # no element was made from a run's name
    assert '<b id="injected"' not in dom and '<img src="x"' not in dom  # no elements
    text = visible_text(dom)
    assert EVIL_NAME in text  # shown literally, as typed
    assert EVIL_PARAM in text
    for heading in ("Runs", "Params that differ", "Metrics", "Curves"):
        assert heading in text
    assert "val_rmse against step" in text and "val_r2 against step" in text
    assert "best (lowest is best)" in text and "FINISHED" in text
    assert dom.count("data:image/svg+xml;base64,") == 2


def test_the_cli_writes_the_same_report(report: Path, tmp_path: Path) -> None:
    other = tmp_path / "cli.html"
    done = subprocess.run(
        [sys.executable, "-m", "mlhooks", "compare", "plain", "--html", str(other)],
        env={**os.environ, "MLHOOKS_BACKENDS": "local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "plain" in visible_text(dump_dom(other, tmp_path))
