"""Run context capture: tags and the artifact, in a temporary git repository (clean
and dirty) and outside any repository, from a real script in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlhooks
from mlhooks import LocalStore
from mlhooks.capture import context
from mlhooks.testing import RecordedRuns

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")

SCRIPT = """
import mlhooks
with mlhooks.start_run("ctx", backends="local") as run:
    mlhooks.log_param("lr", 0.1)
print(run.run_id)
"""


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Test", "-c", "user.email=t@example.com", *args]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "remote", "add", "origin", "https://alice:ghp_secret@github.com/org/project.git")
    (repo / "train.py").write_text(textwrap.dedent(SCRIPT))
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def run_script(folder: Path, *args: str) -> tuple[str, LocalStore]:
    store = folder.parent / "store"
    env = {k: v for k, v in os.environ.items() if k != "MLHOOKS_LOG_CONTEXT"}
    env["MLHOOKS_LOCAL_DIR"] = str(store)
    done = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1], LocalStore(store)


def test_clean_repository(repo: Path) -> None:
    run_id, store = run_script(repo, "--epochs", "3", "--api-key", "k3y")
    data = store.get_run(run_id)
    tags = data.tags
    assert tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.branch"] == "trunk"
    assert tags["mlflow.source.git.repoURL"] == "https://github.com/org/project.git"
    assert tags["mlhooks.context.git.dirty"] == "false"
    assert tags["mlflow.source.name"] == str(repo / "train.py")
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlhooks.context.argv"] == "train.py --epochs 3 --api-key '***'"
    assert tags["mlhooks.context.python"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["mlhooks.context.version.mlhooks"] == mlhooks.__version__
    assert tags["mlhooks.context.hostname"] and tags["mlhooks.context.platform"]
    assert "mlflow.user" in tags
    assert data.artifacts == ["mlhooks/context.json"]
    document = json.loads(store.artifact_path(run_id, "mlhooks/context.json").read_text())
    assert document["git"]["dirty"] is False
    assert document["git"]["remote_url"] == "https://github.com/org/project.git"
    assert any(line.startswith("pytest==") for line in document["requirements"])
    assert "ghp_secret" not in json.dumps(document) + json.dumps(tags)


def test_dirty_repository_keeps_the_diff(repo: Path) -> None:
    (repo / "train.py").write_text(textwrap.dedent(SCRIPT) + "# tuned lr, see http://u:pw@h/\n")
    (repo / "untracked.txt").write_text("not part of the diff")
    run_id, store = run_script(repo)
    data = store.get_run(run_id)
    assert data.tags["mlhooks.context.git.dirty"] == "true"
    assert sorted(data.artifacts) == ["mlhooks/context.json", "mlhooks/git.diff"]
    diff = store.artifact_path(run_id, "mlhooks/git.diff").read_text()
    assert "+# tuned lr, see http://***@h/" in diff
    assert "untracked" not in diff


def test_linked_worktree_and_packed_refs(repo: Path, tmp_path: Path) -> None:
    git(repo, "pack-refs", "--all")
    worktree = tmp_path / "feature"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    run_id, store = run_script(worktree)
    tags = store.get_run(run_id).tags
    assert tags["mlflow.source.git.branch"] == "feature"
    assert tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert tags["mlflow.source.git.repoURL"] == "https://github.com/org/project.git"


def test_outside_any_repository(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(SCRIPT))
    run_id, store = run_script(folder)
    data = store.get_run(run_id)
    assert not any(k.startswith("mlflow.source.git") for k in data.tags)
    assert "mlhooks.context.git.dirty" not in data.tags
    assert data.tags["mlflow.source.name"] == str(folder / "train.py")
    document = json.loads(store.artifact_path(run_id, "mlhooks/context.json").read_text())
    assert document["git"] is None


def test_parts_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_CONTEXT", "platform,seeds")
    monkeypatch.setenv("PL_GLOBAL_SEED", "42")
    with mlhooks.start_run("env"):
        pass
    with mlhooks.start_run("arg", log_context=["entry_point"]):
        pass
    with mlhooks.start_run("off", log_context=False):
        pass
    env = mlhooks_memory.run_named("env").tags
    assert env["mlhooks.context.seed.lightning"] == "42"
    assert "mlhooks.context.python" in env and "mlflow.source.name" not in env
    arg = mlhooks_memory.run_named("arg").tags
    assert "mlflow.source.name" in arg and "mlhooks.context.python" not in arg
    assert mlhooks_memory.run_named("off").tags == {}
    assert mlhooks_memory.run_named("off").artifacts == []
    with pytest.raises(ValueError, match="unknown run context part"):
        mlhooks.start_run("bad", log_context=["gti"])
    with pytest.raises(ValueError, match="unknown run context part"):
        mlhooks.autolog(log_context="gti")


def test_nested_runs_inherit_the_source_tags_without_capturing(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    monkeypatch.delenv("MLHOOKS_LOG_CONTEXT")
    with mlhooks.start_run("search"):
        for i in range(5):
            with mlhooks.start_run(f"candidate-{i}", nested=True):
                mlhooks.log_param("i", i)
    parent = mlhooks_memory.run_named("search")
    assert parent.artifacts == ["mlhooks/context.json"]
    for i in range(5):
        child = mlhooks_memory.run_named(f"candidate-{i}")
        assert child.artifacts == []  # no capture of its own
        assert set(child.tags) <= set(context.SOURCE_TAGS)
        assert child.tags["mlflow.source.name"] == parent.tags["mlflow.source.name"]


def test_autolog_option_reaches_autologged_runs(fake: object, mlhooks_memory: RecordedRuns) -> None:
    import importlib

    mlhooks.autolog(log_context=["versions"])
    importlib.import_module("fakefw").Model().fit([1.0])
    tags = mlhooks_memory.only_run().tags
    assert tags["mlhooks.context.version.fakefw"] == "1.4.0"  # a framework in play
    assert not any(k.startswith("mlflow.source") for k in tags)


def test_torch_seed_is_observed(mlhooks_memory: RecordedRuns) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1234)
    with mlhooks.start_run("seeded", log_context=["seeds"]):
        pass
    assert mlhooks_memory.only_run().tags["mlhooks.context.seed.torch"] == "1234"


def test_runs_within_seconds_reuse_the_capture(
    mlhooks_memory: RecordedRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_CONTEXT", "1")
    import threading

    names = []
    for i in range(3):
        with mlhooks.start_run(f"fit-{i}"):
            names.append({t.name for t in threading.enumerate()})
    stored = [mlhooks_memory.run_named(f"fit-{i}") for i in range(3)]
    assert all(run.tags["mlflow.source.name"] for run in stored)
    assert all(any("context.json" in a for a in run.artifacts) for run in stored)
    assert stored[1].tags == stored[2].tags
    assert "mlhooks-context" not in names[2]


DURING_A_FIT = """
import json, pathlib, sys
import mlhooks
from mlhooks import LocalStore
from mlhooks.plugin import FitSession

store = LocalStore(pathlib.Path(sys.argv[1]))
session = FitSession("fw", "fit")
session.start()  # the fit's run starts, and with it the context capture
run_id = session.fit.run.run_id

def document():
    path = store.artifact_path(run_id, "mlhooks/context.json")
    return json.loads(path.read_text()) if path.exists() else None

found = None
for _ in range(500):  # while the fit runs, the requirements wait for it to end
    assert mlhooks.flush(30)
    found = document()
    if found is not None:
        break
print("during", json.dumps(sorted(found)))
session.end()
assert mlhooks.flush(30)
print("after", json.dumps(sorted(document())), len(document()["requirements"]))
"""


def test_the_context_is_stored_during_a_fit_and_completed_after_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLHOOKS_LOG_CONTEXT"}
    env["MLHOOKS_BACKENDS"] = "local"
    done = subprocess.run(
        [sys.executable, "-c", DURING_A_FIT, str(tmp_path / "store")],
        cwd=tmp_path,
        env={**env, "MLHOOKS_LOCAL_DIR": str(tmp_path / "store")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    during, after = done.stdout.strip().splitlines()[-2:]
    assert "requirements" not in json.loads(during.split(" ", 1)[1])  # a kill now keeps this
    assert "requirements" in after and int(after.rsplit(" ", 1)[1]) > 10


def test_a_managed_runs_end_does_not_wait_for_its_context(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    """A run mlhooks manages ends at the end of its fit without waiting for the run
    context; its end is stored after the context, once the capture reported it. (A
    user's run still waits: they read it right after.)"""
    import threading

    from mlhooks.plugin import open_run

    context.forget()
    gate = threading.Event()
    collect = context.collect

    def slow(parts: frozenset[str]) -> object:
        gate.wait(30)  # the capture takes as long as the test says
        return collect(parts)

    monkeypatch.setattr(context, "collect", slow)
    run = open_run("managed", managed=True, log_context=True)
    mlhooks.end_run(run=run.info)  # returns although the capture has not reported yet
    from mlhooks.delivery.recorder import recorder

    assert not recorder.wait_released(run.info.run_id, 0)  # its end waits for the context
    gate.set()
    assert mlhooks.flush(30)
    stored = mlhooks_memory.run_named("managed")
    assert stored.info.status.value == "FINISHED"
    assert "mlhooks.context.python" in stored.tags  # the context, before the end


def test_a_managed_run_ended_while_its_context_is_captured_still_ends_at_exit(
    tmp_path: Path,
) -> None:
    """The process exits while the context of a managed run that already ended is
    still being captured (longer than ``MLHOOKS_EXIT_TIMEOUT`` allows): the run's end
    is stored anyway."""
    script = textwrap.dedent(
        """
        import time
        import mlhooks
        from mlhooks.capture import context
        from mlhooks.plugin import open_run

        collect = context.collect
        context.collect = lambda parts: (time.sleep(30), collect(parts))[1]
        run = open_run("managed", managed=True, log_context=True)
        mlhooks.end_run(run=run.info)
        """
    )
    env = {**os.environ, "MLHOOKS_BACKENDS": "local", "MLHOOKS_EXIT_TIMEOUT": "4"}
    env["MLHOOKS_LOCAL_DIR"] = str(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = LocalStore(tmp_path / "store")
    (run_id,) = store.run_ids()
    assert store.info(run_id).status.value == "FINISHED"


def test_requirements_are_every_installed_distribution_with_its_version() -> None:
    # Read from the metadata folders' names (fast), they match the distributions' own
    # metadata (slow to parse) once names are normalized.
    import importlib.metadata
    import re

    from mlhooks.capture.context import requirements

    def normal(pin: str) -> str:
        name, version = pin.split("==")
        return re.sub(r"[-_.]+", "-", name).lower() + "==" + version

    expected = set()
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"]:
            expected.add(normal(f"{dist.metadata['Name']}=={dist.version}"))
    found = {normal(pin) for pin in requirements()}
    assert found <= expected  # a distribution shadowed further down sys.path is left out
    assert {pin.split("==")[0] for pin in found} == {pin.split("==")[0] for pin in expected}
