"""Several processes (issue 13, items 5 and 6): processes that create one fresh sqlite
store at once all succeed, and every point of every process is stored."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKERS = """
    import multiprocessing as mp
    import mlhooks

    mlhooks.autolog()  # in the parent: forked workers inherit it, spawned ones import it

    def work(worker):
        import mlhooks
        with mlhooks.start_run(f"worker-{worker}"):
            mlhooks.log_param("worker", worker)
            for step in range(5000):
                mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)

    if __name__ == "__main__":
        context = mp.get_context("{method}")
        processes = [context.Process(target=work, args=(i,)) for i in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        print([process.exitcode for process in processes])
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_processes_on_a_fresh_sqlite_store_store_everything(
    tmp_path: Path, method: str
) -> None:
    """MLflow's schema creation races between the processes; mlhooks makes the first
    create it and the others wait, and retries what a shared database refuses for a
    moment (``database is locked``): 4 runs, 20,000 points, none twice."""
    from mlflow.tracking import MlflowClient

    script = tmp_path / "workers.py"  # spawn needs a real module to import `work` from
    script.write_text(textwrap.dedent(WORKERS).replace("{method}", method))
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "MLHOOKS_BACKENDS": "mlflow",
        "MLHOOKS_LOCAL_DIR": str(tmp_path / "local"),
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "[0, 0, 0, 0]", result.stderr
    client = MlflowClient(uri)
    runs = client.search_runs(["0"])
    assert sorted(r.info.run_name for r in runs) == [f"worker-{i}" for i in range(4)]
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(5000))
    assert not (tmp_path / "local" / ".spool" / "rejected").exists()
