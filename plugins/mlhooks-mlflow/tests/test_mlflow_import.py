"""Where MLflow is imported in a training process that tracks into it in process: on
the MLflow writer's thread, never on the thread that trains (its import is about a
second of CPU, which a fit would pay), and not at ``autolog()``."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from mlhooks.testing import run_script

SCRIPT = """
    import json, sys, threading

    importers = []

    class WhoImportsMlflow:
        def find_spec(self, name, path=None, target=None):
            if name == "mlflow":
                importers.append(threading.current_thread().name)
            return None

    sys.meta_path.insert(0, WhoImportsMlflow())

    import numpy as np
    from sklearn.linear_model import Ridge

    import mlhooks

    mlhooks.autolog()
    after_autolog = "mlflow" in sys.modules
    X = np.random.default_rng(0).random((60, 3))
    Ridge(alpha=0.5).fit(X, X.sum(axis=1))
    mlhooks.flush()
    print(json.dumps({"after_autolog": after_autolog, "importers": importers}))
"""


def test_mlflow_is_imported_on_the_writer_thread_not_the_training_thread(
    tracking_uri: str, tmp_path: Path
) -> None:
    done = run_script(
        SCRIPT,
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLHOOKS_SERVICE": "0",
            "MLHOOKS_LOCAL_DIR": str(tmp_path / "local"),
        },
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after_autolog"] is False
    assert len(seen["importers"]) == 1
    assert seen["importers"][0].startswith("mlhooks-writer-"), seen["importers"]
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    assert run.data.params["alpha"] == "0.5"
    assert run.info.status == "FINISHED"
