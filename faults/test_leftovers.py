"""Nothing outlives its use (issue 13 repro 15, issue 15 "leftovers"): a process that
writes only to MLflow leaves nothing in the working folder besides MLflow's own store,
and no process leaves its staged snapshots behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import wait_for_services
from mlhooks.testing import run_script

SCRIPT = """
    import mlhooks
    from pathlib import Path

    Path("notes.txt").write_text("a file the run keeps")
    with mlhooks.start_run("tidy"):
        mlhooks.log_metric("loss", 0.5)
        mlhooks.log_artifact("notes.txt")
        mlhooks.log_model({"w": 1}, name="model")
    Path("notes.txt").unlink()
"""


def run_with_mlflow_only(script: str, folder: Path) -> list[str]:
    """Run ``script`` in ``folder`` with only MLflow's sqlite store, reading its stderr
    to its end (so its writer service has let go of it); what the folder then holds."""
    result = run_script(
        script,
        env={"MLHOOKS_BACKENDS": "mlflow", "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"},
        cwd=str(folder),
    )
    assert result.returncode == 0, result.stderr
    return sorted(p.name for p in folder.iterdir())


def test_a_process_that_uses_only_mlflow_leaves_only_mlflows_store(tmp_path: Path) -> None:
    assert run_with_mlflow_only(SCRIPT, tmp_path) == ["mlflow.db", "mlruns"]


def test_the_local_store_keeps_no_staged_snapshot_after_exit(tmp_path: Path) -> None:
    result = run_script(SCRIPT, env={"MLHOOKS_BACKENDS": "local"}, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "mlhooks-runs"
    assert not (root / ".staging").exists()
    (run,) = [p for p in root.iterdir()]
    stored = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"artifacts/notes.txt", "models/model/model.pkl"} <= stored


def test_sync_removes_the_snapshots_it_stored(tmp_path: Path) -> None:
    """A backend down until exit: the spool names the staged file of an artifact;
    once ``mlhooks sync`` stored it, the snapshot goes too."""
    store, root = tmp_path / "store", tmp_path / "mlhooks-runs"
    result = run_script(
        f"""
        import warnings, mlhooks
        from pathlib import Path
        from mlhooks.backends.local import LocalBackend

        class Unreachable(LocalBackend):  # spools as "local": sync rebuilds a real one
            def apply(self, op):
                raise ConnectionError("tracking server unreachable")

        warnings.simplefilter("ignore")
        Path("notes.txt").write_text("kept")
        with mlhooks.start_run("offline", backends=[Unreachable({str(store)!r})]):
            mlhooks.log_artifact("notes.txt")
        """,
        env={
            "MLHOOKS_LOCAL_DIR": str(root),
            "MLHOOKS_RETRY_DELAYS": "0.01",
            "MLHOOKS_FLUSH_TIMEOUT": "2",
            "MLHOOKS_EXIT_TIMEOUT": "2",
            "MLHOOKS_STRICT": "0",
            "MLHOOKS_LOG_CONTEXT": "0",
        },
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert list((root / ".staging").iterdir())
    wait_for_services(root)
    synced = subprocess.run(
        [sys.executable, "-m", "mlhooks", "sync", "--dir", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synced.returncode == 0, synced.stderr
    (run,) = list(store.iterdir())
    assert (run / "artifacts" / "notes.txt").read_text() == "kept"
    assert not any((root / ".staging").glob("*/*"))


def test_a_service_that_stores_after_the_process_exited_leaves_only_mlflows_store(
    tmp_path: Path,
) -> None:
    # The run is left open: the process hands its journal over at exit and leaves while
    # the service still creates the store and stores the staged model. The service
    # removes the emptied ./mlhooks-runs before it lets go of the script's stderr (what
    # ``run_script`` reads to its end); before, only its own exit did, after letting go,
    # and a CI run of the demo listed the folder in between.
    script = """
        import mlhooks

        mlhooks.start_run("left-open")
        for step in range(200):
            mlhooks.log_metric("loss", 1 / (step + 1), step=step)
        mlhooks.log_model({"w": 1}, name="model")  # staged: the service stores it
    """
    assert run_with_mlflow_only(script, tmp_path) == ["mlflow.db", "mlruns"]
