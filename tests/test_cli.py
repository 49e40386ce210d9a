"""The `mlhooks` command, run as a subprocess against the local store: every command,
its exit code and its output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click")
pytest.importorskip("sklearn")

import mlhooks
from mlhooks.cli import doctor
from mlhooks.testing import train_by_hand


def mlhooks_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlhooks", *args],
        env={**os.environ, "MLHOOKS_BACKENDS": "local", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def runs() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {}
    for name, eta0 in (("slow", 0.001), ("fast", 0.01)):
        run_id, logged = train_by_hand(name, eta0, backends="local")
        made[name] = {"id": run_id, "logged": logged}
    yield made


def test_runs_table_filter_and_order(runs: dict[str, Any]) -> None:
    table = mlhooks_cli("runs")
    assert table.returncode == 0, table.stderr
    assert "2 runs" in table.stdout
    assert runs["slow"]["id"] in table.stdout and runs["fast"]["id"] in table.stdout
    assert "metrics.val_rmse" in table.stdout and "FINISHED" in table.stdout

    filtered = mlhooks_cli("runs", "--filter", "params.eta0 = '0.01'", "--format", "json")
    assert filtered.returncode == 0, filtered.stderr
    (record,) = json.loads(filtered.stdout)
    assert record["run_name"] == "fast" and record["params.eta0"] == "0.01"
    assert record["metrics.val_rmse"] == runs["fast"]["logged"]["val_rmse"][-1]

    ordered = mlhooks_cli(
        "runs", "--order-by", "metrics.val_rmse DESC", "--format", "csv", "-c", "run_name"
    )
    assert ordered.returncode == 0, ordered.stderr
    finals = {name: runs[name]["logged"]["val_rmse"][-1] for name in runs}
    assert ordered.stdout.split() == ["run_name", *sorted(finals, key=finals.get, reverse=True)]

    bad = mlhooks_cli("runs", "--filter", "colour ~ 1")
    assert bad.returncode == 1 and "Error:" in bad.stderr


def test_no_runs(tmp_path: Path) -> None:
    empty = mlhooks_cli("runs", MLHOOKS_LOCAL_DIR=str(tmp_path / "empty"))
    assert empty.returncode == 0 and empty.stdout.strip() == "no runs"


def test_show(runs: dict[str, Any]) -> None:
    shown = mlhooks_cli("show", "fast")
    assert shown.returncode == 0, shown.stderr
    for text in (runs["fast"]["id"], "eta0", "0.01", "val_rmse", "SGDRegressor", "FINISHED"):
        assert text in shown.stdout
    as_json = json.loads(mlhooks_cli("show", runs["slow"]["id"], "--format", "json").stdout)
    assert as_json["run_name"] == "slow" and as_json["params.eta0"] == "0.001"
    missing = mlhooks_cli("show", "nope")
    assert missing.returncode == 1
    assert "no run with id or name 'nope'" in missing.stderr


def test_compare_with_html_report(runs: dict[str, Any], tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    compared = mlhooks_cli("compare", "slow", "fast", "--metric", "val_rmse", "--html", str(report))
    assert compared.returncode == 0, compared.stderr
    assert "val_rmse (final)" in compared.stdout and "val_rmse (best)" in compared.stdout
    assert "val_r2" not in compared.stdout
    assert f"report written to {report}" in compared.stdout
    page = report.read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 1
    assert "slow" in page and "fast" in page

    as_json = json.loads(mlhooks_cli("compare", "slow", "fast", "--format", "json").stdout)
    assert [r["run_name"] for r in as_json] == ["slow", "fast"]
    assert as_json[1]["val_r2 (best)"] == max(runs["fast"]["logged"]["val_r2"])

    assert mlhooks_cli("compare").returncode == 2  # a run is required
    unknown = mlhooks_cli("compare", "slow", "nope")
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr


def test_doctor(runs: dict[str, Any], tmp_path: Path) -> None:
    checked = mlhooks_cli("doctor")
    assert checked.returncode == 0, checked.stderr
    root = Path(os.environ["MLHOOKS_LOCAL_DIR"]).resolve()
    assert f"local store at {root}" in checked.stdout
    assert "backends (where data goes)" in checked.stdout and "frameworks" in checked.stdout
    document = json.loads(mlhooks_cli("doctor", "--format", "json").stdout)
    (local,) = [b for b in document["backends"] if b["name"] == "local"]
    assert local["default"] and local["answers"] is True
    assert set(local["keeps"]) == {c.value for c in mlhooks.Capability}
    assert local["skips"] == []
    assert document["mlhooks"] == mlhooks.__version__

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    broken = mlhooks_cli("doctor", MLHOOKS_LOCAL_DIR=str(not_a_folder))
    assert broken.returncode == 1
    assert "NO:" in broken.stdout


def test_doctor_lists_what_autolog_patches(fake: Any) -> None:
    (report,) = [f for f in doctor.frameworks() if f.name == "fakefw"]
    assert report.problem is None and report.version == "1.4.0"  # fakefw.__version__
    assert report.patches == ["fakefw.Model.fit", "fakefw.Pipeline.fit", "fakefw.train"]
    assert not fake.integration.is_patched  # put back as it was


def test_version_and_missing_extra() -> None:
    version = mlhooks_cli("--version")
    assert version.returncode == 0 and f"mlhooks, version {mlhooks.__version__}" in version.stdout
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from mlhooks.cli import main\n"
        "sys.exit(main(['runs']))"
    )
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "pip install 'mlhooks[cli]'" in missing.stderr


def test_sync_shows_progress_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from rich.console import Console

    from mlhooks import LocalStore
    from mlhooks.cli import commands as cli_commands
    from mlhooks.delivery.spool import find_spools
    from mlhooks.testing import run_script

    store, root = tmp_path / "store", tmp_path / "runs"
    made = run_script(
        f"""
        import warnings, mlhooks
        from mlhooks.backends.local import LocalBackend

        class Unreachable(LocalBackend):  # spools as "local": sync rebuilds a real one
            def apply(self, op):
                raise ConnectionError("down")

        warnings.simplefilter("ignore")
        with mlhooks.start_run("offline", backends=[Unreachable({str(store)!r})]) as run:
            for i in range(5):
                mlhooks.log_param(f"p{{i}}", i)
                mlhooks.flush(1)
        print(run.run_id)
        """,
        env={
            "MLHOOKS_LOCAL_DIR": str(root),
            "MLHOOKS_RETRY_DELAYS": "0.01",
            "MLHOOKS_FLUSH_TIMEOUT": "2",
            "MLHOOKS_EXIT_TIMEOUT": "2",
            "MLHOOKS_STRICT": "0",
        },
    )
    assert made.returncode == 0, made.stderr
    (spool,) = find_spools(root / ".spool")
    pending = spool.count_pending()
    terminal = io.StringIO()
    monkeypatch.setattr(
        cli_commands,
        "_console",
        lambda stderr=False: Console(file=terminal, force_terminal=True, width=100),
    )
    assert cli_commands.sync_spools(root, None, force=False) == 0
    assert f"{pending}/{pending}" in terminal.getvalue()  # the bar reached the end
    assert f"synced {pending} operations" in capsys.readouterr().out
    run_id = made.stdout.strip()
    assert LocalStore(store).get_run(run_id).params == {f"p{i}": str(i) for i in range(5)}


def test_sync_removes_the_snapshots_it_stored_and_no_other_file(tmp_path: Path) -> None:
    """A process that is gone spooled three files: two snapshots in its staging folder
    (one of them also named by a spool of rejected operations) and a file of the user's
    own (it could not be staged). Once ``mlhooks sync`` stored them, the snapshot that no
    spool names any more is gone; the other snapshot and the user's file stay."""
    from mlhooks import LocalStore
    from mlhooks.cli import commands as cli_commands
    from mlhooks.testing import run_script

    root, store, own = tmp_path / "runs", tmp_path / "store", tmp_path / "own.txt"
    own.write_text("the user's file")
    made = run_script(
        f"""
        from pathlib import Path
        from mlhooks import RunInfo
        from mlhooks.backends.local import LocalBackend
        from mlhooks.delivery import staging
        from mlhooks.delivery.spool import SpoolWriter
        from mlhooks.plugin import EndRun, LogArtifact, StartRun

        Path("a.txt").write_text("a")
        Path("b.txt").write_text("b")
        a, b = staging.stage("a.txt"), staging.stage("b.txt")
        store = LocalBackend({str(store)!r})
        info = RunInfo(run_id="r1", name="r", start_time=1)
        spool = SpoolWriter(Path({str(root / ".spool")!r}), store)
        ops = [LogArtifact("r1", path, None) for path in (a, b, {str(own)!r})]
        spool.append([StartRun(info), *ops, EndRun("r1", "FINISHED", 2)])
        rejected = SpoolWriter(Path({str(root / ".spool" / "rejected")!r}), store)
        rejected.append([LogArtifact("r1", b, "again")], reason="refused")
        print(a, b)
        """,
        env={"MLHOOKS_LOCAL_DIR": str(root)},
        cwd=str(tmp_path),
    )
    assert made.returncode == 0, made.stderr
    a, b = (Path(path) for path in made.stdout.split())
    assert cli_commands.sync_spools(root, None) == 0
    assert LocalStore(store).get_run("r1").artifacts == ["a.txt", "b.txt", "own.txt"]
    assert not a.parent.exists() and b.exists() and own.read_text() == "the user's file"


def test_the_readme_compare_workflow(tmp_path: Path) -> None:
    """README "Compare runs": the example's two runs, then the command it prints."""
    example = Path(__file__).parents[1] / "examples" / "compare_runs.py"
    env = {**os.environ, "MLHOOKS_BACKENDS": "local"}
    made = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    command = made.stdout.strip().splitlines()[-1].split()
    assert command[:2] == ["mlhooks", "compare"] and command[-2:] == ["--html", "report.html"]
    report = tmp_path / "report.html"
    compared = mlhooks_cli(*command[1:-1], str(report))
    assert compared.returncode == 0, compared.stderr
    assert "sgd-eta0-0.001" in compared.stdout and "val_rmse (best)" in compared.stdout
    assert report.read_text().count("data:image/svg+xml;base64,") == 2


def test_runs_fits_an_80_column_terminal_with_whole_run_ids(runs: dict[str, Any]) -> None:
    narrow = mlhooks_cli("runs", COLUMNS="80")
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for made in runs.values():  # each id whole on one line, to be copied
        assert any(made["id"] in line for line in lines)
    assert "metrics.val_rmse" not in narrow.stdout and "start" not in narrow.stdout
    wide = mlhooks_cli("runs", "--wide", COLUMNS="80")
    assert wide.returncode == 0, wide.stderr
    assert "start" in wide.stdout and "metrics.val_r" in wide.stdout


def test_short_runs_show_their_duration_in_milliseconds(tmp_path: Path) -> None:
    with mlhooks.start_run("instant", backends="local"):
        mlhooks.log_metric("m", 1.0)
    shown = mlhooks_cli("runs", "-c", "run_name,duration", "--format", "table")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"instant\s+│\s+\d+ ms", shown.stdout), shown.stdout


def test_messages_name_the_plugin_to_install_or_load() -> None:
    missing = mlhooks_cli("runs", "-b", "mlflow", MLHOOKS_DISABLE_PLUGINS="mlflow")
    assert missing.returncode == 1
    assert "unknown backend 'mlflow' (mlhooks-mlflow " in missing.stderr
    report = mlhooks_cli("doctor", "--no-probe", MLHOOKS_DISABLE_PLUGINS="sklearn")
    assert report.returncode == 0, report.stderr
    # The frameworks table comes first (its width depends on the plugins installed).
    row = next(line for line in report.stdout.splitlines() if re.match(r"│ sklearn +│", line))
    assert "not tracked: mlhooks-sklearn" in row or "pip install mlhooks-sklearn" in row
