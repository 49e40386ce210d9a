"""Bad input (issue 13, item 3): a user's call gets a ValueError naming what and why,
autologging gets a sanitized value and one warning, and whatever passes the door is
stored by every backend, exactly, with nothing written outside the store."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Store

REFUSED = {  # a user's call -> the words its ValueError must say
    "mlhooks.log_metric('', 1.0)": "empty",
    "mlhooks.log_metric('x' * 1000, 1.0)": "at most 250 characters",
    "mlhooks.log_metric('loss 🙂', 1.0)": "may only contain letters",
    "mlhooks.log_metric('a//b', 1.0)": "must not name another path",
    "mlhooks.log_metric('/abs', 1.0)": "must not start with '/'",
    "mlhooks.log_metric('a/../b', 1.0)": "contain '..'",
    "mlhooks.log_metric('loss', None)": "must be a real number",
    "mlhooks.log_metric('loss', 'high')": "must be a real number",
    "mlhooks.log_metric('loss', 1.0, step=2**70)": "does not fit in 64 bits",
    "mlhooks.log_metric('loss', 1.0, step=1.5)": "step must be an integer",
    "mlhooks.log_metric('loss', 1.0, timestamp=-5)": "timestamp must be milliseconds",
    "mlhooks.log_metric('loss', 1.0, timestamp='now')": "timestamp must be milliseconds",
    "mlhooks.log_metrics({'loss': 1.0}, timestamp=float('nan'))": "timestamp must be",
    "mlhooks.log_param('big', 'x' * 1_000_000)": "more than the 6000 a store keeps",
    "mlhooks.set_tag('note', 'x' * 8001)": "more than the 8000 a store keeps",
    "mlhooks.log_param('../etc', 1)": "contain '..'",
    "mlhooks.log_artifact(FILE, '/srv/elsewhere/X')": "relative path inside",
    "mlhooks.log_artifact(FILE, '../../../../X')": "relative path inside",
    "mlhooks.log_artifact('missing.txt')": "needs an existing file",
    "mlhooks.log_artifacts(FILE)": "needs an existing directory",
    "mlhooks.log_model([1], name='../m')": "contain '..'",
    "mlhooks.start_run(run_id='../../X', nested=True)": "run_id '../../X' must be",
}

ACCEPTED = """
    import numpy as np
    import torch

    mlhooks.log_metric("nan", float("nan"), step=0)
    mlhooks.log_metric("inf", float("inf"), step=0)
    mlhooks.log_metric("minus_inf", -math.inf, step=0)
    mlhooks.log_metric("numpy", np.float32(0.5), step=np.int64(3))
    mlhooks.log_metric("torch", torch.tensor(0.25), step=torch.tensor(4).item())
    mlhooks.log_metric("zero_d", np.array(0.75), step=5)
    mlhooks.log_metric("last_step", 1.0, step=2**63 - 1)
    mlhooks.log_metric("first_time", 1.0, step=0, timestamp=0)
    mlhooks.log_metric("température moyenne", 20.5)  # letters of any script
    mlhooks.log_metric("val/loss: epoch-end", 0.1)  # spaces, colon, slash, dash
    mlhooks.log_metric("k" * 250, 1.0)
    mlhooks.log_param("p" * 250, "v" * 6000)
    mlhooks.log_params({f"param_{i}": i for i in range(10_000)})
    mlhooks.set_tag("note", "t" * 8000)
"""


def test_a_users_bad_call_is_refused_and_the_rest_is_stored(store: Store, tmp_path: Path) -> None:
    """Each refused call names what and why; the same run then stores every edge value
    that passed, exactly, in the local store and in MLflow alike."""
    calls = json.dumps(list(REFUSED))
    result = store.script(
        f"""
        import json, math, os
        import mlhooks

        FILE = "artifact.txt"
        open(FILE, "w").write("data")
        errors = {{}}
        with mlhooks.start_run("edges"):
            for call in json.loads({calls!r}):
                try:
                    exec(call)
                except ValueError as error:
                    errors[call] = str(error)
            {textwrap.indent(textwrap.dedent(ACCEPTED).strip(), " " * 12).lstrip()}
        print(json.dumps(errors))
        """,
        MLHOOKS_STRICT="1",
        MLHOOKS_EXIT_TIMEOUT="600",  # 10,000 params on a loaded machine: not an exit case
    )
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout.splitlines()[-1])
    for call, words in REFUSED.items():
        assert call in errors, f"{call} was not refused"
        assert words in errors[call], errors[call]
    run = store.run("edges")
    assert run.status == "FINISHED"
    stored = {key: points[-1] for key, points in run.metrics.items()}
    # MLflow's SQL stores keep infinities as the largest finite doubles.
    infinity = math.inf if store.kind == "local" else sys.float_info.max
    assert math.isnan(stored["nan"][1]) and stored["inf"][1] == infinity
    assert stored["minus_inf"][1] == -infinity
    assert stored["numpy"] == (3, 0.5) and stored["torch"] == (4, 0.25)
    assert stored["zero_d"] == (5, 0.75) and stored["last_step"] == (2**63 - 1, 1.0)
    assert stored["température moyenne"][1] == 20.5 and "val/loss: epoch-end" in stored
    assert "k" * 250 in stored and "loss" not in stored
    assert run.params["p" * 250] == "v" * 6000
    assert len([k for k in run.params if k.startswith("param_")]) == 10_000
    assert "big" not in run.params and "../etc" not in run.params
    _assert_nothing_outside(tmp_path)


def test_autologging_sanitizes_bad_input_with_one_warning_each(
    store: Store, tmp_path: Path
) -> None:
    """Inside autologging nothing is refused: a usable key or value is stored instead,
    with one warning per problem, and training (the script) goes on."""
    result = store.script(
        """
        import os, warnings
        import mlhooks
        from mlhooks.plugin import FitSession

        open("artifact.txt", "w").write("data")
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            session = FitSession("fw", "sanitized", params={"": 1, "a//b": 2, "big": "x" * 7000})
            session.start()
            session.log_metrics({"loss 🙂": 1.0, "/abs": 2.0, "text": "high"}, step=2**70)
            session.log_metrics({"late": 3.0}, step=1, timestamp=-5)
            session.log_artifact("artifact.txt", "../../../../X")
            session.log_artifact("artifact.txt", "/srv/elsewhere/Y")
            session.log_artifact("missing.txt")
            session.end()
        print(len([w for w in caught if "mlhooks" in str(w.message)]))
        """,
        MLHOOKS_STRICT="0",
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == 11  # one per problem: 3 params, 3 metric
    # keys and values, the step, the timestamp, two artifact paths, the missing file
    run = store.run("sanitized")
    assert run.status == "FINISHED"
    assert run.params["_"] == "1" and run.params["a/b"] == "2"
    assert run.params["big"] == "x" * 6000
    assert run.metrics["loss _"] == [(2**63 - 1, 1.0)] and run.metrics["abs"][0][1] == 2.0
    assert run.metrics["late"] == [(1, 3.0)] and "text" not in run.metrics
    _assert_nothing_outside(tmp_path)


def test_nested_model_names_are_stored_and_listed(tmp_path: Path) -> None:
    """A model named ``a/b`` is a nested path in the local store, and it is listed."""
    from mlhooks import LocalStore
    from mlhooks.testing import run_script

    root = tmp_path / "runs"
    result = run_script(
        """
        import mlhooks
        with mlhooks.start_run("models"):
            mlhooks.log_model({"w": 1}, name="stage/encoder")
            mlhooks.log_model({"w": 2}, name="model")
        """,
        env={"MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)},
    )
    assert result.returncode == 0, result.stderr
    store = LocalStore(root)
    (run_id,) = store.run_ids()
    assert sorted(m.name for m in store.get_run(run_id).models) == ["model", "stage/encoder"]


def test_symlinks_are_stored_as_their_targets_and_dangling_ones_skipped(
    tmp_path: Path,
) -> None:
    from mlhooks import LocalStore
    from mlhooks.testing import run_script

    outside = tmp_path / "outside.txt"
    outside.write_text("the target")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "link.txt").symlink_to(outside)
    (folder / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    root = tmp_path / "runs"
    result = run_script(
        f"""
        import mlhooks
        with mlhooks.start_run("links"):
            mlhooks.log_artifacts({str(folder)!r}, "folder")
        """,
        env={"MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(root)},
    )
    assert result.returncode == 0, result.stderr
    store = LocalStore(root)
    (run_id,) = store.run_ids()
    artifacts = store.get_run(run_id).artifacts
    assert [name for name in artifacts if name.startswith("folder/")] == ["folder/link.txt"]
    stored = store.artifact_path(run_id, "folder/link.txt")
    assert stored.read_text() == "the target" and not stored.is_symlink()


def test_an_experiment_name_mlflow_refuses_is_one_warning_and_nothing_is_lost(
    tmp_path: Path, mlflow_tracking_uri: str
) -> None:
    """``MLFLOW_EXPERIMENT_NAME`` names an experiment MLflow refuses (longer than its 500
    characters), read as each run starts and taken to wherever MLflow is written (the
    writer service in a session that runs it): one warning, and each run is stored
    whole, FINISHED, in MLflow's default experiment."""
    root = tmp_path / "mlhooks-runs"
    env = {
        "MLHOOKS_LOCAL_DIR": str(root),
        "MLHOOKS_BACKENDS": "mlflow",
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": "x" * 600,
        "MLHOOKS_STRICT": "0",
    }
    done = Store("mlflow", env, root).script(
        """
        import mlhooks
        for name in ("first", "second"):
            with mlhooks.start_run(name):
                for step in range(100):
                    mlhooks.log_metric("loss", step / 100, step=step)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("MLflow refuses the experiment") == 1, done.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((r.info.run_name, r.info.experiment_id, r.info.status) for r in runs) == [
        ("first", "0", "FINISHED"),
        ("second", "0", "FINISHED"),
    ]
    for run in runs:
        points = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in points) == [(s, s / 100) for s in range(100)]


def _assert_nothing_outside(tmp_path: Path) -> None:
    """Files named X or Y exist only inside a run's artifacts (sanitized), never where
    ``../../../../X`` or ``/srv/elsewhere/Y`` pointed."""
    for name in ("X", "Y"):
        for found in tmp_path.parent.glob(f"**/{name}"):
            assert "/artifacts/" in str(found), f"{found} escaped the store"
    assert not Path("/srv/elsewhere").exists()


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the scripts write their files here
