"""Development sessions: ``nox`` runs tests, mlflow2 and lint; ``nox -s demo`` and ``nox -s bench``.

Every ``plugins/<name>/`` with a pyproject.toml is a distribution of its own: the tests
session installs it editable beside the core and runs its ``tests/`` folder, with no edit
here. Each session builds a fresh virtualenv with the interpreter that runs nox (pass
``-r`` to reuse one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests", "mlflow2", "lint"]

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent.relative_to(ROOT) for p in ROOT.glob("plugins/*/pyproject.toml"))
TORCH = "torch==2.13.0"
IN_PROCESS_CASES = ["faults", "plugins/mlhooks-mlflow/tests"]
"""Run a second time with the writer service off (``MLHOOKS_SERVICE=0``): the fault
matrix and the MLflow backend's tests, with MLflow and TensorBoard written from the
training process's own threads (the fallback where no subprocess can be started)."""
SINGLE_THREADED = {
    name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
}
LONGEST_FIRST = [
    "faults", "plugins/mlhooks-mlflow/tests", "faults (in process)",
    "plugins/mlhooks-mlflow/tests (in process)", "plugins/mlhooks-lightning/tests",
    "plugins/mlhooks-transformers/tests", "tests", "plugins/mlhooks-ray/tests",
]  # fmt: skip
"""The test runs that take the longest, started first (the others follow in folder
order), so that the runs going on at once end close together."""
MLFLOW2 = [
    "mlflow==2.14.3", "numpy==1.26.4", "pandas==2.3.3", "pyarrow==15.0.2",
    "scikit-learn==1.9.1", "sqlalchemy==2.0.58", "setuptools==80.10.2", "psycopg2-binary",
]  # fmt: skip
"""The oldest MLflow the MLflow plugin supports (its newest 2.14 patch), with what it
works with: numpy 1 and pyarrow < 16 (its own bounds), SQLAlchemy 2.0 (2.1 dropped a pool
class it imports), setuptools < 81 (it imports ``pkg_resources``), psycopg2 (its store on
PostgreSQL; see ``mlhooks_mlflow.postgres``)."""
JOBS_VARIABLE = "MLHOOKS_TEST_JOBS"
"""How many pytest processes the tests session runs at once: by default one per CPU, at
most 4 (the fault matrix alone takes about a third of the whole)."""


@nox.session
def tests(session: nox.Session) -> None:
    """The core's tests, the fault matrix and each plugin's tests, in strict mode, one
    pytest process per folder, several at once (one per CPU, at most 4; ``MLHOOKS_TEST_JOBS``
    says how many: ``1`` runs them one after the other); posargs go to pytest."""
    # torch first and pinned: that version is a CPU build; any other pulls CUDA (GBs).
    session.install(TORCH)
    editable_plugins = [arg for plugin in PLUGINS for arg in ("-e", f"{plugin}[test]")]
    session.install("-e", ".[test]", "hypothesis", TORCH, *editable_plugins)
    env = {"MLHOOKS_STRICT": "1", **SINGLE_THREADED}
    if any(Path(arg.split("::")[0]).exists() for arg in session.posargs):
        session.run("pytest", *session.posargs, env=env)  # the caller chose what to run
        return
    # Every test script is a fresh interpreter importing the editable sources: compiled
    # once here, as pip compiled the installed packages (else, with PYTHONDONTWRITEBYTECODE
    # set, each interpreter would compile them again).
    sources = ["src", *(str(p / "src") for p in PLUGINS)]
    session.run("python", "-m", "compileall", "-q", *sources, silent=True)
    # The fault-injection suite (faults/) needs every plugin installed, as do the others.
    test_dirs = ["tests", "faults", *(str(p / "tests") for p in PLUGINS if (p / "tests").is_dir())]
    # One pytest process per distribution: each keeps its own conftest and sys.path.
    runs = {test_dir: ([test_dir], env) for test_dir in test_dirs}
    # The fault matrix and the MLflow backend's tests again with the writer service off:
    # MLflow and TensorBoard are then written by threads of each script's own process.
    # (Cases on the local store run the same in both modes: once is enough.)
    for folder in IN_PROCESS_CASES:  # one pytest process each: their conftests differ
        runs[f"{folder} (in process)"] = (
            [folder, "-k", "not local"], {**env, "MLHOOKS_SERVICE": "0"}
        )  # fmt: skip
    order = [name for name in LONGEST_FIRST if name in runs]
    order += [name for name in runs if name not in order]
    # A -k filter may select nothing in some folder, which pytest reports as exit 5.
    ok = [0, 5] if session.posargs else [0]
    jobs = int(os.environ.get(JOBS_VARIABLE) or min(cpu_count(), 4))
    failed = run_at_once(session, [(name, *runs[name]) for name in order], jobs, ok)
    if failed:
        session.error(f"tests failed: {', '.join(failed)}")


@nox.session
def mlflow2(session: nox.Session) -> None:
    """The MLflow plugin's tests on MLflow 2 (:data:`MLFLOW2`), in strict mode: models
    are run artifacts there; the tests of MLflow 3 features say so as they skip. The
    plugins its tests autolog with are installed beside it; posargs go to pytest."""
    session.install(TORCH)  # first and pinned, as in the tests session
    plugins = ["mlhooks-mlflow[test]", "mlhooks-sklearn", "mlhooks-xgboost", "mlhooks-lightning"]
    editable = [arg for name in plugins for arg in ("-e", f"plugins/{name}")]
    session.install("-e", ".[test]", *editable, TORCH, "lightning", *MLFLOW2)
    env = {"MLHOOKS_STRICT": "1", **SINGLE_THREADED}
    session.run("pytest", "plugins/mlhooks-mlflow/tests", *session.posargs, env=env)


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_at_once(
    session: nox.Session,
    runs: list[tuple[str, list[str], dict[str, str]]],
    jobs: int,
    ok: list[int],
) -> list[str]:
    """Run ``pytest <args> <posargs>`` for each ``(name, args, env)``, ``jobs`` at a
    time in the order given; each run's output is shown whole once it ends. The names
    of the runs that failed."""
    if jobs <= 1:  # one after the other, their output as it comes
        failed = []
        for name, args, env in runs:
            try:
                session.run("pytest", *args, *session.posargs, env=env, success_codes=ok)
            except CommandFailed:
                failed.append(name)
        return failed
    shown = threading.Lock()
    failed = []
    with tempfile.TemporaryDirectory(prefix="mlhooks-tests-") as outputs:

        def run(number: int, name: str, args: list[str], env: dict[str, str]) -> None:
            started = time.monotonic()
            path = Path(outputs, f"{number}.log")
            with open(path, "w") as output:
                try:
                    session.run(
                        "pytest", *args, *session.posargs, env=env, success_codes=ok,
                        stdout=output, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                except CommandFailed:
                    failed.append(name)
            took = time.monotonic() - started
            with shown:
                print(f"\n===== pytest {' '.join(args)}: {took:.0f} s =====", flush=True)
                sys.stdout.write(path.read_text(errors="replace"))
                sys.stdout.flush()

        with ThreadPoolExecutor(jobs) as pool:
            for future in [pool.submit(run, n, *spec) for n, spec in enumerate(runs)]:
                future.result()
    return failed


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (check and format) over the tree, mypy over src/mlhooks and the plugins
    listed in pyproject's mypy ``files`` (their frameworks installed for their types),
    and import-linter's contracts (pyproject's ``[tool.importlinter]``): the core's
    layers, plugins that import only ``mlhooks`` and ``mlhooks.plugin``, no cycles."""
    # mlhooks.testing is a pytest plugin; the cli and compare extras are type-checked too;
    # mlflow, xgboost, lightgbm, Lightning, Optuna, wandb, Transformers and Ray ship the type hints
    # their plugins are checked against (torch first and pinned, as in the tests session).
    session.install(TORCH)
    session.install("-e", ".[lint,cli,compare]", "-e", "plugins/mlhooks-mlflow", "pytest",
                    "xgboost", "lightgbm", TORCH, "lightning", "pytorch_lightning",
                    "optuna", "wandb", "transformers", "ray[tune]")  # fmt: skip
    # import-linter reads every plugin's source: installed without their dependencies.
    session.install("--no-deps", *[arg for plugin in PLUGINS for arg in ("-e", str(plugin))])
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session
def demo(session: nox.Session) -> None:
    """Bike-sharing demand forecast (a fit and a grid search), tracked into ./mlflow.db."""
    # Only what the demo uses: the lightning plugin would pull a CUDA build of torch.
    demo_plugins = ("plugins/mlhooks-mlflow", "plugins/mlhooks-sklearn")
    session.install(".", *demo_plugins, "numpy", "pandas", "scikit-learn")
    session.run("python", "examples/demo.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmarks/bench_*.py, one after the other (the plugins they compare
    against MLflow's own logging, and the frameworks they train, installed)."""
    session.install(TORCH)  # first and pinned: a CPU build (see tests)
    session.install(".", "numpy", "pandas", "scikit-learn", TORCH, "lightning", "xgboost",
                    "lightgbm", "matplotlib", "optuna", "transformers", "accelerate",
                    "psycopg[binary]", *map(str, PLUGINS))  # fmt: skip
    for script in sorted(ROOT.glob("benchmarks/bench_*.py")):
        session.run("python", str(script.relative_to(ROOT)), env=SINGLE_THREADED)
