"""No secret reaches storage (issue 13, item 8): each planted secret is looked for in
every byte each backend stored."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Store

SECRETS = {
    "dirty diff": "hunter2-diff",
    "bearer param": "eyBearerTokenValue42",
    "connection string": "pg-pass-77",
    "aws key in a tag": "AKIAIOSFODNN7EXAMPLE",
    "github token in a description": "ghp_" + "Z" * 36,
    "secret-named param": "plain-but-secret-99",
    "command line": "cli-secret-55",
}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for a dirty diff")
def test_planted_secrets_reach_no_store(store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    (repo / "train.py").write_text("lr = 0.1\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (repo / "train.py").write_text(f"lr = 0.1\npassword = '{SECRETS['dirty diff']}'\n")
    result = store.script(
        f"""
        import sys
        sys.argv = ["train.py", "--api-key", "{SECRETS["command line"]}"]
        import mlhooks

        description = "token {SECRETS["github token in a description"]}"
        with mlhooks.start_run("secrets", description=description):
            mlhooks.log_params({{
                "auth": "Bearer {SECRETS["bearer param"]}",
                "db": "postgresql+psycopg://admin:{SECRETS["connection string"]}@db:5432/x",
                "db_password": "{SECRETS["secret-named param"]}",
                "lr": 0.1,
            }})
            mlhooks.set_tag("note", "key {SECRETS["aws key in a tag"]} rotated")
            mlhooks.log_metric("loss", 0.5)
        """,
        cwd=str(repo),
    )
    assert result.returncode == 0, result.stderr
    run = store.run("secrets")
    assert run.params["lr"] == "0.1" and run.params["auth"] == "Bearer ***"
    assert run.params["db"] == "postgresql+psycopg://***@db:5432/x"
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and repo not in p.parents]
    assert any(p.name == "git.diff" for p in stored), "the dirty diff was not captured"
    for path in stored:
        content = path.read_bytes()
        for what, secret in SECRETS.items():
            assert secret.encode() not in content, f"the {what} is in {path}"
