"""Several processes (issue 13, items 5 and 6): processes that create one fresh sqlite
store at once all succeed, and every point of every process is stored, by the process
that logged it, before it ends."""

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
    # Each worker stored its own data before it ended: a journal goes only once all of
    # it is delivered (a forked worker ends by os._exit, which skips atexit).
    assert not list((tmp_path / "local").glob(".journal/*.journal"))


FITS = """
    import multiprocessing as mp
    import numpy as np
    from sklearn.linear_model import Ridge
    import mlhooks

    mlhooks.autolog()

    def fit(worker):
        X = np.random.default_rng(worker).normal(size=(50, 3))
        Ridge(alpha=worker + 1.0).fit(X, X @ [1.0, 2.0, 3.0])  # a run mlhooks opens and ends

    if __name__ == "__main__":
        context = mp.get_context("{method}")
        processes = [context.Process(target=fit, args=(i,)) for i in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        print([process.exitcode for process in processes])
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_fits_in_workers_are_stored_before_the_workers_end(tmp_path: Path, method: str) -> None:
    """Workers that multiprocessing forks end by ``os._exit``, without atexit: an
    autologged fit's run, which ends without waiting for its data, would be left in
    the worker's journal (or, within the journal's first interval, lost) for a later
    process to deliver. mlhooks runs its exit sequence when a worker's work ends, so
    the parent finds every run complete in MLflow as soon as it joined them."""
    from mlflow.tracking import MlflowClient

    script = tmp_path / "fits.py"
    script.write_text(textwrap.dedent(FITS).replace("{method}", method))
    uri = f"sqlite:///{tmp_path / 'fits.db'}"
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
    runs = MlflowClient(uri).search_runs(["0"])
    assert sorted(float(run.data.params["alpha"]) for run in runs) == [1.0, 2.0, 3.0, 4.0]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.metrics, "the fit's metrics"
    assert not list((tmp_path / "local").glob(".journal/*.journal"))
