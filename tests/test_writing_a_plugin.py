"""The example of docs/writing-a-plugin.md works: its files are extracted from the page,
written to a temporary folder, imported, registered and used, and what they store is
read back. Its own test file runs in a pytest subprocess, as a plugin author runs it."""

from __future__ import annotations

import csv
import importlib
import math
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import mlhooks
from mlhooks import MlhooksWarning, RunStatus
from mlhooks.core.host import PluginHost
from mlhooks.testing import RecordedRuns

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
FENCE = re.compile(
    r"^```(?P<lang>\w+) file=(?P<name>\S+)[ \t]*\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
EXPECTED_FILES = {
    "tinyfit.py",
    "mlhooks_tinyfit.py",
    "mlhooks_csv.py",
    "mlhooks_lossalert.py",
    "pyproject.toml",
    "test_mlhooks_tinyfit.py",
}
X = [[1.0], [2.0], [3.0]]
Y = [1.0, 2.0, 3.0]


def doc_files() -> dict[str, tuple[str, str]]:
    """file name -> (language, text) of every ```lang file=NAME block of the page."""
    files: dict[str, tuple[str, str]] = {}
    for match in FENCE.finditer(DOC.read_text(encoding="utf-8")):
        name = match["name"]
        assert name not in files, f"{name} is defined twice in {DOC.name}"
        files[name] = (match["lang"], match["body"])
    return files


@dataclass
class Example:
    """The example distribution, written to ``root`` (which is on sys.path)."""

    root: Path
    files: dict[str, tuple[str, str]]

    @property
    def modules(self) -> list[str]:
        return [Path(name).stem for name, (lang, _) in self.files.items() if lang == "python"]

    def load(self, module: str) -> ModuleType:
        return importlib.import_module(module)


def forget_modules(names: list[str]) -> None:
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Example]:
    files = doc_files()
    root = tmp_path / "example"
    root.mkdir()
    for name, (_, text) in files.items():
        (root / name).write_text(text, encoding="utf-8")
    found = Example(root, files)
    forget_modules(found.modules)
    monkeypatch.syspath_prepend(str(root))
    yield found
    forget_modules(found.modules)


@pytest.fixture
def plugins(example: Example, mlhooks_plugin: Any) -> dict[str, ModuleType]:
    """The three plugin modules, imported; the integration and backend registered."""
    modules = {
        name: example.load(name) for name in ("mlhooks_tinyfit", "mlhooks_csv", "mlhooks_lossalert")
    }
    mlhooks_plugin(modules["mlhooks_tinyfit"])
    mlhooks_plugin(modules["mlhooks_csv"])
    return modules


def is_patched(module: ModuleType) -> bool:
    return hasattr(vars(module.Regressor)["fit"], "__wrapped__")


# -- the page itself ----------------------------------------------------------------------


def test_the_page_defines_every_file_once_and_the_code_compiles() -> None:
    files = doc_files()
    assert set(files) == EXPECTED_FILES
    assert files["pyproject.toml"][0] == "toml"
    for name, (lang, text) in files.items():
        if lang == "python":
            compile(text, name, "exec")


def test_importing_the_plugin_does_not_import_the_framework(example: Example) -> None:
    example.load("mlhooks_tinyfit")
    assert "tinyfit" not in sys.modules


# -- plugin 1: the integration ------------------------------------------------------------


@pytest.mark.parametrize("import_first", [True, False], ids=["import-autolog", "autolog-import"])
def test_autolog_tracks_a_fit_as_one_run(
    example: Example,
    plugins: dict[str, ModuleType],
    mlhooks_memory: RecordedRuns,
    import_first: bool,
) -> None:
    if import_first:
        tinyfit = example.load("tinyfit")
        assert not is_patched(tinyfit)
    mlhooks.autolog()
    tinyfit = example.load("tinyfit")
    assert is_patched(tinyfit)

    model = tinyfit.Regressor(epochs=4, lr=0.5)
    assert model.fit(X, Y) is model

    run = mlhooks_memory.only_run()
    assert run.info.name == "Regressor"
    assert run.info.managed
    assert run.info.status is RunStatus.FINISHED
    assert run.params == {"epochs": "4", "lr": "0.5"}
    assert run.tags["mlhooks.framework"] == "tinyfit"
    losses = run.history("loss")
    assert [point.step for point in losses] == [0, 1, 2, 3]
    assert [point.value for point in losses] == model.losses_
    assert losses == sorted(losses, key=lambda point: -point.value)  # it converges
    assert [(p.value, p.step) for p in run.history("mean")] == [(model.mean_, 3)]
    assert [(d.name, d.shape, d.kind) for d in run.datasets] == [("X", (3, 1), "list")]
    assert run.models[0].load().mean_ == model.mean_

    mlhooks.autolog(disable=True)
    assert not is_patched(tinyfit)
    tinyfit.Regressor().fit(X, Y)
    assert len(mlhooks_memory.runs) == 1


def test_the_error_of_a_failing_fit_propagates_and_fails_the_run(
    example: Example, plugins: dict[str, ModuleType], mlhooks_memory: RecordedRuns
) -> None:
    mlhooks.autolog()
    tinyfit = example.load("tinyfit")
    with pytest.raises(ZeroDivisionError):
        tinyfit.Regressor().fit([], [])
    assert mlhooks_memory.only_run().info.status is RunStatus.FAILED


def test_per_framework_options_reach_the_integration(
    example: Example, plugins: dict[str, ModuleType], mlhooks_memory: RecordedRuns
) -> None:
    mlhooks.autolog(tinyfit={"log_models": False, "log_datasets": False})
    example.load("tinyfit").Regressor(epochs=2).fit(X, Y)
    run = mlhooks_memory.only_run()
    assert run.models == [] and run.datasets == []
    assert len(run.history("loss")) == 2


def test_the_integrations_own_options_are_checked_and_reach_it(
    example: Example, plugins: dict[str, ModuleType], mlhooks_memory: RecordedRuns
) -> None:
    with pytest.raises(
        TypeError,
        match=r"unknown option 'log_maen'; did you mean 'log_mean'.*\? The options of tinyfit: "
        r"log_mean, and the common ones: exclusive, extra_tags, log_datasets, ",
    ):
        mlhooks.autolog(tinyfit={"log_maen": False})
    with pytest.raises(TypeError, match=r"'log_mean' must be bool, not 'no' \(str\)"):
        mlhooks.autolog(tinyfit={"log_mean": "no"})
    mlhooks.autolog(log_models=False, tinyfit={"log_mean": False})
    model = example.load("tinyfit").Regressor(epochs=2).fit(X, Y)
    run = mlhooks_memory.only_run()
    assert run.history("mean") == [] and run.models == []
    assert [point.value for point in run.history("loss")] == model.losses_


@pytest.mark.parametrize("version", ["0.9", "2.0.1"])
def test_a_version_outside_the_range_warns_and_is_not_patched(
    example: Example, plugins: dict[str, ModuleType], mlhooks_memory: RecordedRuns, version: str
) -> None:
    tinyfit = example.load("tinyfit")
    tinyfit.__version__ = version
    with pytest.warns(
        MlhooksWarning, match=rf"tinyfit {re.escape(version)} is .*\(supported: >=1\.0,<2\.0\)"
    ):
        mlhooks.autolog()
    assert not is_patched(tinyfit)
    mlhooks.autolog(allow_unsupported=True)
    tinyfit.Regressor().fit(X, Y)
    assert len(mlhooks_memory.runs) == 1


# -- plugin 2: the backend ----------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("selected_by", ["argument", "environment"])
def test_the_csv_backend_selected_by_name_writes_the_run(
    example: Example,
    plugins: dict[str, ModuleType],
    mlhooks_memory: RecordedRuns,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    selected_by: str,
) -> None:
    backend_class = plugins["mlhooks_csv"].CsvBackend
    unexpected: list[str] = []
    for method in ("log_model", "log_dataset", "log_artifact"):
        monkeypatch.setattr(
            backend_class, method, lambda self, op, method=method: unexpected.append(method)
        )
    directory = tmp_path / "csv"
    monkeypatch.setenv("MLHOOKS_CSV_DIR", str(directory))
    if selected_by == "argument":
        mlhooks.autolog(backends=["csv", mlhooks_memory.backend])
    else:
        monkeypatch.setenv("MLHOOKS_BACKENDS", "csv")
        mlhooks.autolog()
    assert isinstance(mlhooks.backend("csv"), backend_class)

    model = example.load("tinyfit").Regressor(epochs=3).fit(X, Y)
    assert mlhooks.flush(30)

    (path,) = directory.glob("*.csv")
    rows = read_csv(path)
    assert (rows[0]["kind"], rows[0]["key"], rows[0]["value"]) == ("run", "name", "Regressor")
    assert (rows[-1]["kind"], rows[-1]["key"], rows[-1]["value"]) == ("run", "status", "FINISHED")
    params = {r["key"]: r["value"] for r in rows if r["kind"] == "param"}
    assert params == {"epochs": "3", "lr": "0.5"}
    tags = {r["key"]: r["value"] for r in rows if r["kind"] == "tag"}
    assert tags["mlhooks.framework"] == "tinyfit"
    losses = [(int(r["step"]), float(r["value"])) for r in rows if r["key"] == "loss"]
    assert losses == list(enumerate(model.losses_))
    assert unexpected == []  # capabilities: no models, datasets or artifacts
    if selected_by == "argument":
        stored = mlhooks_memory.only_run()
        assert path.stem == stored.info.run_id
        assert stored.models and stored.datasets
    else:
        assert mlhooks_memory.runs == {}


def test_the_csv_backend_takes_options_through_mlhooks_backend(
    example: Example, plugins: dict[str, ModuleType], mlhooks_memory: RecordedRuns, tmp_path: Path
) -> None:
    backend = mlhooks.backend("csv", directory=tmp_path / "elsewhere")
    assert backend.spec() == {"directory": str((tmp_path / "elsewhere").resolve())}
    with mlhooks.start_run("manual", backends=backend):
        mlhooks.log_metric("loss", math.nan, step=7)
    (path,) = (tmp_path / "elsewhere").glob("*.csv")
    (metric,) = [r for r in read_csv(path) if r["kind"] == "metric"]
    assert metric["key"] == "loss" and metric["step"] == "7" and math.isnan(float(metric["value"]))


def test_an_unknown_backend_name_fails_at_autolog(
    example: Example, mlhooks_plugin: Any, mlhooks_memory: RecordedRuns
) -> None:
    with pytest.raises(ValueError, match="unknown backend 'csv'"):
        mlhooks.autolog(backends=["csv"])  # the plugin is not registered


# -- plugin 3: the listener ---------------------------------------------------------------


def test_the_alert_warns_when_a_logged_loss_is_nan(
    plugins: dict[str, ModuleType], mlhooks_plugin: Any, mlhooks_memory: RecordedRuns
) -> None:
    alerts = plugins["mlhooks_lossalert"]
    mlhooks_plugin(alerts.LossAlert())
    with mlhooks.start_run("manual"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", alerts.LossWarning)
            mlhooks.log_metric("loss", 1.0, step=0)
            mlhooks.log_metric("loss", 0.5, step=1)
            mlhooks.log_metric("accuracy", math.nan, step=1)  # not the loss
        with pytest.warns(alerts.LossWarning, match="run 'manual': loss is NaN"):
            mlhooks.log_metric("loss", math.nan, step=2)
    assert math.isnan(mlhooks_memory.only_run().history("loss")[-1].value)


def test_the_alert_warns_once_when_a_fit_diverges(
    example: Example,
    plugins: dict[str, ModuleType],
    mlhooks_plugin: Any,
    mlhooks_memory: RecordedRuns,
) -> None:
    alerts = plugins["mlhooks_lossalert"]
    mlhooks_plugin(alerts.alert)  # the object the entry point names
    mlhooks.autolog()
    tinyfit = example.load("tinyfit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", alerts.LossWarning)
        tinyfit.Regressor(epochs=5, lr=0.5).fit(X, Y)  # converges: no warning
    with pytest.warns(alerts.LossWarning, match="'Regressor': loss grew from") as caught:
        diverging = tinyfit.Regressor(epochs=5, lr=2.5).fit(X, Y)
    assert len([w for w in caught if w.category is alerts.LossWarning]) == 1
    assert diverging.losses_ == sorted(diverging.losses_)
    assert alerts.alert._last == {}  # forgotten at fit end


# -- packaging and the page's own tests ----------------------------------------------------


def write_dist_info(example: Example) -> dict[str, str]:
    """Install the page's pyproject.toml as far as importlib.metadata is concerned."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(example.files["pyproject.toml"][1])["project"]
    entry_points: dict[str, str] = project["entry-points"]["mlhooks"]
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    dist_info = example.root / f"{name}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = ["[mlhooks]", *(f"{key} = {value}" for key, value in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    importlib.invalidate_caches()
    return entry_points


def test_the_entry_points_of_the_pyproject_load(example: Example) -> None:
    entry_points = write_dist_info(example)
    assert set(entry_points) == {"tinyfit", "csv", "loss-alert"}
    host = PluginHost()
    host.load()
    assert host.failed == {}
    assert set(entry_points) <= set(host.plugin_names())
    assert type(host.integrations["tinyfit"]).__name__ == "TinyfitIntegration"
    assert host.integrations["tinyfit"].plugin_name == "tinyfit"
    assert host.backends["csv"] is example.load("mlhooks_csv").CsvBackend
    assert host.pm.get_plugin("loss-alert") is example.load("mlhooks_lossalert").alert
    assert "tinyfit" not in sys.modules


@pytest.mark.parametrize(
    ("variable", "value", "loaded"),
    [
        ("MLHOOKS_PLUGINS", "tinyfit,csv", {"tinyfit", "csv"}),
        ("MLHOOKS_DISABLE_PLUGINS", "loss-alert", {"tinyfit", "csv"}),
        ("MLHOOKS_PLUGINS", "loss-alert", {"loss-alert"}),
    ],
)
def test_the_environment_chooses_among_the_entry_points(
    example: Example, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, loaded: set[str]
) -> None:
    entry_points = write_dist_info(example)
    monkeypatch.setenv(variable, value)
    host = PluginHost()
    host.load()
    assert set(entry_points) & set(host.plugin_names()) == loaded
    assert {"local", "memory"} <= set(host.backends)


def test_the_pages_own_tests_pass_in_a_pytest_subprocess(example: Example) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("MLHOOKS_STRICT", None)  # the page's tests set it themselves
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example.root)],
        cwd=example.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout
