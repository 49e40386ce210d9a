"""The example script runs as written and tells what landed in MLflow."""

from __future__ import annotations

import re
from pathlib import Path

from mlhooks.testing import run_script

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "transformers_tiny_bert.py"


def test_the_example_runs(tracking_uri: str, tmp_path: Path) -> None:
    done = run_script(
        EXAMPLE.read_text(),
        env={"MLFLOW_TRACKING_URI": tracking_uri, "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs"),
             "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^tiny-bert [0-9a-f]{32} FINISHED$", out, flags=re.MULTILINE), out
    assert "loss at steps [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]" in out
    assert "eval_loss at steps [40, 80, 120]" in out
    # save_total_limit=2 deletes old checkpoints from disk: every one is in the run
    assert (
        "checkpoints: ['checkpoints/checkpoint-120', 'checkpoints/checkpoint-40', "
        "'checkpoints/checkpoint-80']" in out
    )
    assert "high sentence: LABEL_1 low sentence: LABEL_0" in out, out
