"""One settings table for every ``MLHOOKS_*`` variable, and one ordered exit and fork
sequence (mlhooks.core.settings, mlhooks.core.shutdown)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import mlhooks
from mlhooks.cli import doctor
from mlhooks.core import settings
from mlhooks.core.errors import setting_or_default
from mlhooks.delivery.lanes import retry_policy_from_env
from mlhooks.testing import run_script

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "src", *sorted((ROOT / "plugins").glob("*/src"))]
ENV_READ = re.compile(r"""(environ(\.get)?\s*[\[(]|getenv\s*\()\s*["']MLHOOKS_""")


def test_no_module_but_the_settings_reads_an_mlhooks_variable() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for source in SOURCES
        for path in source.rglob("*.py")
        if ENV_READ.search(path.read_text())
    ]
    assert readers == []


def test_every_variable_the_code_names_is_declared() -> None:
    mlhooks.list_plugins()  # plugins declare their own variables when they load
    named = {
        name
        for source in SOURCES
        for path in source.rglob("*.py")
        for name in re.findall(r"\bMLHOOKS_[A-Z_]*[A-Z]\b", path.read_text())
    }
    shipped_but_absent = {  # a shipped plugin that this environment lacks
        name
        for name in named - set(settings.VARIABLES)
        if any(f'"{name}"' in p.read_text() for p in (ROOT / "plugins").rglob("*.py"))
    }
    assert named - set(settings.VARIABLES) - shipped_but_absent == set()


def test_the_readme_table_is_the_settings_table() -> None:
    mlhooks.list_plugins()
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| Variable | Meaning (default) |")
    rows = readme[start : readme.index("\n\n", start)].splitlines()
    declared = [row for row in rows if _name(row) in settings.VARIABLES or row[:3] != "| `"]
    assert "\n".join(declared) + "\n" == settings.markdown_table(), (
        "README.md's table of variables is out of date: paste settings.markdown_table()"
    )
    for row in rows:  # a row of a plugin not installed here is that plugin's own
        if _name(row) not in settings.VARIABLES and row[:3] == "| `":
            assert any(_name(row) in p.read_text() for p in (ROOT / "plugins").rglob("*.py"))


def _name(row: str) -> str:
    return row.split("`")[1] if row.startswith("| `") else ""


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("MLHOOKS_STRICT", "Yes", True),
        ("MLHOOKS_BACKENDS", " local, memory ,", ("local", "memory")),
        ("MLHOOKS_LOG_EVERY_N_STEPS", "", None),
        ("MLHOOKS_RETRY_DELAYS", "0,0.5", (0.0, 0.5)),
        ("MLHOOKS_EXIT_TIMEOUT", "2.5", 2.5),
    ],
)
def test_values_are_parsed_as_declared(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, value: object
) -> None:
    monkeypatch.setenv(name, raw)
    assert settings.get(name) == value


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("MLHOOKS_LOG_MODELS", "maybe", "is not a boolean"),
        ("MLHOOKS_LOG_EVERY_N_STEPS", "0", "must be at least 1"),
        ("MLHOOKS_FLUSH_TIMEOUT", "soon", "is not a number of seconds"),
        ("MLHOOKS_PROBE_INTERVAL", "0", "must be more than zero seconds"),
        ("MLHOOKS_RETRY_DELAYS", "1,-2", "must be zero or more seconds"),
    ],
)
def test_a_malformed_value_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, why: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=rf"^{re.escape(f'{name}={raw!r}')} {why}"):
        settings.get(name)


def test_autolog_and_the_writer_refuse_malformed_values(
    mlhooks_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_EVERY_N_STEPS", "ten")
    with pytest.raises(ValueError, match="MLHOOKS_LOG_EVERY_N_STEPS='ten' is not an integer"):
        mlhooks.autolog()
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "-1")
    with pytest.raises(ValueError, match="MLHOOKS_PROBE_INTERVAL"):
        retry_policy_from_env()


def test_code_that_must_not_fail_warns_once_and_uses_the_default(
    mlhooks_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_EXIT_TIMEOUT", "a minute")
    with pytest.warns(mlhooks.MlhooksWarning, match="MLHOOKS_EXIT_TIMEOUT='a minute'.*60"):
        assert setting_or_default("MLHOOKS_EXIT_TIMEOUT") == 60.0
    assert setting_or_default("MLHOOKS_EXIT_TIMEOUT") == 60.0  # warned once


def test_doctor_names_unknown_and_malformed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_BACKEND", "local")  # a typo of MLHOOKS_BACKENDS
    monkeypatch.setenv("MLHOOKS_SILENT", "sure")
    shown = doctor.settings()
    assert shown["MLHOOKS_BACKEND"] == (
        "local  (not an mlhooks setting, ignored; did you mean MLHOOKS_BACKENDS?)"
    )
    assert shown["MLHOOKS_SILENT"].startswith("sure  (invalid: MLHOOKS_SILENT='sure' is not")


def test_a_declared_name_must_be_an_mlhooks_variable() -> None:
    with pytest.raises(ValueError, match="start with MLHOOKS_"):
        settings.declare("TB_DIR", settings.text, None, "somewhere")
    with pytest.raises(ValueError, match="already declared by mlhooks"):
        settings.declare("MLHOOKS_STRICT", settings.flag, False, "mine", owner="someone")


def test_exit_runs_every_stage_in_order_once_even_when_one_fails(tmp_path: Path) -> None:
    result = run_script(
        """
        from mlhooks.core.shutdown import Stage, at_exit

        def step(name, fail=False):
            def run():
                print(name, flush=True)
                if fail:
                    raise RuntimeError("a broken step")
            run.__qualname__ = name
            return run

        for stage in reversed(Stage):  # added in the reverse of the order they run in
            at_exit(step(stage.name, fail=stage is Stage.TASKS), stage)
        again = step("INTEGRATIONS-2")
        at_exit(again)  # plugins' default stage: integrations
        at_exit(again)  # added twice, runs once
        """,
        env={"MLHOOKS_STRICT": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "INTEGRATIONS",
        "INTEGRATIONS-2",
        "ACTIVITY",
        "TASKS",
        "RUNS",
        "RECORDER",
        "LANES",
        "FILES",
    ]
    assert "exit (tasks: TASKS) failed and was skipped" in result.stderr
    assert "RuntimeError: a broken step" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only")
def test_a_forked_child_runs_the_fork_steps_in_order_and_the_parent_none(tmp_path: Path) -> None:
    result = run_script(
        """
        import os
        from mlhooks.core.shutdown import Stage, in_forked_child

        for stage in reversed(Stage):
            in_forked_child(lambda name=stage.name: print("child", name, flush=True), stage)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent done", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        *(f"child {stage}" for stage in ("INTEGRATIONS", "ACTIVITY", "TASKS", "RUNS")),
        "child RECORDER",
        "child LANES",
        "child FILES",
        "parent done",
    ]


def test_mlhooks_registers_one_exit_handler(tmp_path: Path) -> None:
    result = run_script(
        """
        import atexit
        registered = []
        original = atexit.register
        def spy(function, *args, **kwargs):
            registered.append(function.__module__)
            return original(function, *args, **kwargs)
        atexit.register = spy
        import mlhooks
        mlhooks.list_plugins()  # every installed plugin loads
        print(sorted(m for m in registered if m.startswith("mlhooks")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['mlhooks.core.shutdown']"
