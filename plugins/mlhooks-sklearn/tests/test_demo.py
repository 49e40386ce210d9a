"""The README's demo, run as a user runs it: a fresh folder, MLflow's default store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.py"


def test_the_demo_stores_step_wise_curves_and_warns_about_nothing_of_its_own(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLHOOKS_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-W", "default", str(DEMO)],
        cwd=tmp_path,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "demo.py:" not in result.stderr, "the demo's own code warns"
    # MLflow hints at integer columns in every model's signature: the demo has none.
    assert "Inferred schema contains integer column" not in result.stderr
    assert "/#/experiments/0?workflowType=machine_learning" in result.stdout  # its UI link
    assert "4 candidates as child runs" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlruns"]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (fit,) = client.search_runs(["0"], "attributes.run_name = 'Pipeline'")
    curve = client.get_metric_history(fit.info.run_id, "validation_score")
    assert len(curve) > 10
    assert [m.step for m in curve] == list(range(len(curve)))
