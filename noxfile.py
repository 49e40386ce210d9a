"""Development sessions: ``nox`` runs tests and lint; ``nox -s demo`` and ``nox -s bench``.

Every ``plugins/<name>/`` with a pyproject.toml is a distribution of its own: the tests
session installs it editable beside the core and runs its ``tests/`` folder, with no edit
here. Each session builds a fresh virtualenv with the interpreter that runs nox (pass
``-r`` to reuse one).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent.relative_to(ROOT) for p in ROOT.glob("plugins/*/pyproject.toml"))
TORCH = "torch==2.13.0"
SERVICE_CASES = [f"faults/test_{name}.py" for name in ("journal", "process_endings", "tensorboard")]
"""Fault cases run a second time with the writer service on (``MLHOOKS_SERVICE=1``)."""
SINGLE_THREADED = {
    name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
}


@nox.session
def tests(session: nox.Session) -> None:
    """Core tests, then each plugin's tests, in strict mode; posargs go to pytest."""
    # torch first and pinned: that version is a CPU build; any other pulls CUDA (GBs).
    session.install(TORCH)
    editable_plugins = [arg for plugin in PLUGINS for arg in ("-e", f"{plugin}[test]")]
    session.install("-e", ".[test]", "hypothesis", TORCH, *editable_plugins)
    env = {"MLHOOKS_STRICT": "1", **SINGLE_THREADED}
    if any(Path(arg.split("::")[0]).exists() for arg in session.posargs):
        session.run("pytest", *session.posargs, env=env)  # the caller chose what to run
        return
    # The fault-injection suite (faults/) needs every plugin: it runs after the core's.
    test_dirs = ["tests", "faults", *(str(p / "tests") for p in PLUGINS if (p / "tests").is_dir())]
    # One pytest process per distribution: each keeps its own conftest and sys.path.
    # A -k filter may select nothing in some folder, which pytest reports as exit 5.
    ok = [0, 5] if session.posargs else [0]
    for test_dir in test_dirs:
        session.run("pytest", test_dir, *session.posargs, env=env, success_codes=ok)
    # The cases where the writer service changes who delivers (a process that dies, its
    # journal, TensorBoard's disk), again with the service on: MLflow and TensorBoard
    # are then written by a child process of each script.
    session.run(
        "pytest", *SERVICE_CASES, "-k", "not local", *session.posargs,
        env={**env, "MLHOOKS_SERVICE": "1"}, success_codes=ok,
    )  # fmt: skip


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
                    *map(str, PLUGINS))  # fmt: skip
    for script in sorted(ROOT.glob("benchmarks/bench_*.py")):
        session.run("python", str(script.relative_to(ROOT)), env=SINGLE_THREADED)
