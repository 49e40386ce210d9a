"""Nothing outlives its use (issue 13 repro 15, issue 15 "leftovers"): a process that
writes only to MLflow leaves nothing in the working folder besides MLflow's own store,
and no process leaves its staged snapshots behind."""

from __future__ import annotations

from pathlib import Path

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


def test_a_process_that_uses_only_mlflow_leaves_only_mlflows_store(tmp_path: Path) -> None:
    result = run_script(
        SCRIPT,
        env={"MLHOOKS_BACKENDS": "mlflow", "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"},
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlruns"]


def test_the_local_store_keeps_no_staged_snapshot_after_exit(tmp_path: Path) -> None:
    result = run_script(SCRIPT, env={"MLHOOKS_BACKENDS": "local"}, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "mlhooks-runs"
    assert not (root / ".staging").exists()
    (run,) = [p for p in root.iterdir()]
    stored = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"artifacts/notes.txt", "models/model/model.pkl"} <= stored
