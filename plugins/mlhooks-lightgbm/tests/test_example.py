"""The example script runs as written and tells what landed in MLflow."""

from __future__ import annotations

import re
from pathlib import Path

from mlhooks.testing import run_script

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "lightgbm_breast_cancer.py"


def test_the_example_runs(tracking_uri: str, tmp_path: Path) -> None:
    done = run_script(
        EXAMPLE.read_text(),
        env={"MLFLOW_TRACKING_URI": tracking_uri, "MLHOOKS_LOCAL_DIR": str(tmp_path / "runs")},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    names = re.findall(r"^(\S+)\s+[0-9a-f]{32}", out, flags=re.MULTILINE)
    assert names.count("lightgbm-train") == 1 and names.count("GridSearchCV") == 1
    assert sorted(n for n in names if n.startswith("candidate-")) == [
        f"candidate-{i}" for i in range(4)
    ]
    assert len(names) == 6, out  # no run for any LGBMClassifier fit inside the search
    stopped = int(re.search(r"stopped after (\d+) iterations", out)[1])  # type: ignore[index]
    assert f"valid-auc has {stopped} points, one per iteration" in out
    assert "'feature_importance'" in out and "'model'" in out
    assert "the logged model predicts as the booster does: True" in out
