"""A snapshot that several runs name (the run context, reused by the runs of a few
seconds) stays until the last of them is replayed: ``mlhooks sync`` of a spool or of a
killed process's journal stores every run's copy, then removes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlhooks import LocalStore

pytest.importorskip("click")

THREE_RUNS = """
import os, sys, warnings, mlhooks
from mlhooks.backends.local import LocalBackend

class Unreachable(LocalBackend):  # spools and journals as "local": sync rebuilds a real one
    def apply(self, op):
        raise ConnectionError("down")

warnings.simplefilter("ignore")
backend = Unreachable(sys.argv[1])
for name in ("a", "b", "c"):  # within seconds: one run context for all three
    with mlhooks.start_run(name, backends=[backend], log_context=True) as run:
        mlhooks.log_param("name", name)
    print(run.run_id, flush=True)
if sys.argv[2] == "killed":
    mlhooks.flush(2)
    os._exit(0)
"""


@pytest.mark.parametrize("ending", ["exit", "killed"])
def test_a_snapshot_of_several_runs_is_stored_with_each_then_removed(
    tmp_path: Path, ending: str
) -> None:
    store, root = tmp_path / "store", tmp_path / "runs"
    script = tmp_path / "three.py"
    script.write_text(THREE_RUNS)
    env = {
        **os.environ,
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLHOOKS_RETRY_DELAYS": "0.01",
        "MLHOOKS_FLUSH_TIMEOUT": "1",
        "MLHOOKS_EXIT_TIMEOUT": "1",
        "MLHOOKS_STRICT": "0",
    }
    made = subprocess.run(
        [sys.executable, str(script), str(store), ending],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    run_ids = made.stdout.split()
    staged = list((root / ".staging").glob("*/context"))
    assert len(staged) == 1  # one snapshot, named by the three runs
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert synced.returncode == 0, synced.stderr
    stored = LocalStore(store)
    for run_id in run_ids:
        artifacts = stored.get_run(run_id).artifacts
        assert any(path.endswith("context.json") for path in artifacts), (run_id, artifacts)
    assert not list((root / ".staging").glob("*/context"))  # gone once all were stored
