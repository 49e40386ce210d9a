"""The README's Quickstart runs as written and says where its run went."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlhooks import LocalStore
from mlhooks.testing import run_script

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    section = README.read_text().split("## Quickstart", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_the_quickstart_runs_and_says_where_the_run_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "store"
    result = run_script(
        quickstart(), env={"MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)}
    )
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(
        r"run (\w+) is in local store at (.+): `mlhooks show \1` prints it\n", result.stdout
    )
    assert match, result.stdout
    run = LocalStore(root).get_run(match[1])
    assert run.info.name == "baseline" and run.info.experiment == "my-experiment"
    assert len(run.history("loss")) == 10 and [m.name for m in run.models] == ["model"]
    shown = subprocess.run(
        [sys.executable, "-m", "mlhooks", "show", match[1], "-b", "local"],
        env={"MLHOOKS_LOCAL_DIR": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "baseline" in shown.stdout
