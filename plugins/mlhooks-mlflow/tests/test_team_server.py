"""Many training processes writing into one team server (``mlflow server`` on
PostgreSQL) at once: what they race for is retried, and everything lands exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.entities import Dataset, DatasetInput
from mlflow.tracking import MlflowClient

from mlhooks_mlflow.testing import TeamServer, on_team_server

pytestmark = on_team_server

SLOW = 300.0

AUTOLOGGED_FIT = """
import os, sys, time
from pathlib import Path

import mlhooks
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

name, points, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
mlhooks.autolog()
X, y = load_diabetes(return_X_y=True)
with mlhooks.start_run(name) as run:
    mlhooks.log_param("writer", name)
    while not go.exists():
        time.sleep(0.01)
    Ridge(alpha=0.5).fit(X, y)  # its datasets, the same in every process
    for step in range(points):
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
print(run.run_id)
"""


def start_writers(
    tmp_path: Path, server: TeamServer, count: int, points: int, go: Path
) -> list[tuple[subprocess.Popen[str], Path]]:
    """``count`` training processes (:data:`AUTOLOGGED_FIT`) logging into ``server``,
    each with its own local folder (journals, spools); they start fitting when ``go``
    exists."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(AUTOLOGGED_FIT))
    started = []
    for index in range(count):
        local = tmp_path / f"writer-{index}"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": server.uri,
            "MLHOOKS_LOCAL_DIR": str(local),
            "MLHOOKS_STRICT": "0",  # a warning would be a failure: it is read below
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",  # a write waits on the database's lock
            "MLHOOKS_FLUSH_TIMEOUT": str(SLOW),  # a shared machine may be slow: no warning
            "MLHOOKS_EXIT_TIMEOUT": str(SLOW),
            "OMP_NUM_THREADS": "1",
        }
        process = subprocess.Popen(
            [sys.executable, str(script), f"writer-{index}", str(points), str(go)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append((process, local))
    return started


def waiting_dataset_inserts(server: TeamServer) -> int:
    """How many of the server's sessions wait for a lock to insert a dataset."""
    with server.postgres.connect(server.database) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO datasets%%'"
        ).fetchone()
    return int(row[0])


def refused_dataset_inserts(server: TeamServer) -> int:
    """How many dataset registrations the server refused so far (its access log)."""
    log = (server.root / "server.log").read_text(errors="replace")
    return log.count('"POST /api/2.0/mlflow/runs/log-inputs HTTP/1.1" 400')


def test_a_request_waiting_on_the_database_holds_up_no_other(
    team_server: TeamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the race below stands on: while one request waits on a lock of the database,
    the server answers the others, ``/health`` included. A server answering one request
    at a time (gunicorn's default worker, which MLflow 2 runs) would not: mlhooks would
    take it for down and spool (see ``servers.GUNICORN_THREADS``)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(SLOW)))  # it waits on the lock
    client = MlflowClient(team_server.uri)
    run_id = client.create_run("0").info.run_id
    dataset = Dataset(name="table", digest="d1g3st", source_type="code", source="{}")
    with ThreadPoolExecutor(1) as pool:
        with team_server.postgres.connect(team_server.database) as lock:
            with lock.transaction():
                lock.execute("LOCK TABLE datasets IN EXCLUSIVE MODE")
                waiting = pool.submit(client.log_inputs, run_id, [DatasetInput(dataset)])
                deadline = time.monotonic() + SLOW
                while waiting_dataset_inserts(team_server) < 1:
                    assert time.monotonic() < deadline, "the insert never met the lock"
                    assert not waiting.done(), waiting.exception()
                    time.sleep(0.05)
                try:
                    with urllib.request.urlopen(f"{team_server.uri}/health", timeout=10) as answer:
                        assert answer.status == 200
                except OSError as error:
                    pytest.fail(f"/health unanswered while a request waits: {error!r}")
                assert client.get_run(run_id).info.status == "RUNNING"
                assert not waiting.done()
        waiting.result(timeout=SLOW)
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("table", "d1g3st")]


def test_runs_registering_one_dataset_at_the_same_moment_all_land(
    tmp_path: Path, team_server: TeamServer
) -> None:
    """Four processes register the same dataset at the same moment: the database lets
    one insert it and refuses the others (``UniqueViolation`` on ``dataset_pk``, which
    reaches the client as a BAD_REQUEST). The table is held locked until every
    process's insert waits, so that the race happens every time. Each loser tries
    again, finds the dataset and links its run to it: every run, param, point, dataset
    input and model lands once, and nothing is set aside."""
    count, points = 4, 2000
    go = tmp_path / "go"
    refused_before = refused_dataset_inserts(team_server)
    writers = start_writers(tmp_path, team_server, count, points, go)
    with team_server.postgres.connect(team_server.database) as lock:
        with lock.transaction():
            lock.execute("LOCK TABLE datasets IN EXCLUSIVE MODE")  # reads go on, inserts wait
            go.touch()
            deadline = time.monotonic() + SLOW
            while waiting_dataset_inserts(team_server) < count:
                assert time.monotonic() < deadline, "the writers' inserts never met at the lock"
                early = [p for p, _ in writers if p.poll() is not None]
                assert not early, f"a writer exited early:\n{early[0].communicate()[1]}"
                time.sleep(0.05)
    run_ids = []
    for process, local in writers:
        out, err = process.communicate(timeout=SLOW)
        assert process.returncode == 0, err
        assert "mlhooks" not in err.replace(str(local), ""), err  # no warning of ours
        assert not list(local.glob(".spool/rejected/*")), "an operation was set aside"
        run_ids.append(out.strip().splitlines()[-1])

    client = MlflowClient(team_server.uri)
    runs = client.search_runs(["0"], max_results=100)
    assert sorted(r.data.tags["mlhooks.run_id"] for r in runs) == sorted(run_ids)
    digests = set()
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["writer"] == run.info.run_name
        assert run.data.params["alpha"] == "0.5"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(points))  # each exactly once
        inputs = run.inputs.dataset_inputs
        assert inputs, f"run {run.info.run_name} has no dataset"
        digests |= {(i.dataset.name, i.dataset.digest) for i in inputs}
    assert len(digests) == len(runs[0].inputs.dataset_inputs)  # one dataset, shared
    if hasattr(client, "search_logged_models"):  # MLflow 3: each fit's model, once
        models = client.search_logged_models(["0"], max_results=100)
        assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in runs)
        assert {m.status for m in models} == {"READY"}
    with team_server.postgres.connect(team_server.database) as connection:
        stored = connection.execute("SELECT count(*) FROM datasets").fetchone()
    assert stored is not None and stored[0] == len(digests)
    # The race did happen: the server refused all but one of the first inserts.
    assert refused_dataset_inserts(team_server) - refused_before >= count - 1
