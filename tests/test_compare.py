"""compare_runs and plot_metric on runs made by real scikit-learn fits, read back from
the local store."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import mlhooks
from mlhooks.testing import train_by_hand


@pytest.fixture
def two_runs() -> Iterator[tuple[dict[str, str], dict[str, dict[str, list[float]]]]]:
    ids, logged = {}, {}
    for name, eta0 in (("slow", 0.001), ("fast", 0.01)):
        ids[name], logged[name] = train_by_hand(name, eta0, backends="local")
    yield ids, logged


def test_compare_runs_by_id(two_runs: tuple[dict, dict]) -> None:
    ids, logged = two_runs
    table = mlhooks.compare_runs([ids["slow"], ids["fast"]], backend="local")
    assert list(table["run_name"]) == ["slow", "fast"]
    assert list(table["run_id"]) == [ids["slow"], ids["fast"]]
    assert list(table["status"]) == ["FINISHED", "FINISHED"]
    assert (table["duration_s"] >= 0).all()
    # only the params that differ
    assert [c for c in table.columns if c.startswith("params.")] == ["params.eta0"]
    assert list(table["params.eta0"]) == ["0.001", "0.01"]
    for i, name in enumerate(["slow", "fast"]):
        rmse, r2 = logged[name]["val_rmse"], logged[name]["val_r2"]
        assert table["val_rmse (final)"][i] == rmse[-1]
        assert table["val_rmse (best)"][i] == min(rmse)  # lower is better for an error
        assert table["val_r2 (final)"][i] == r2[-1]
        assert table["val_r2 (best)"][i] == max(r2)


def test_runs_given_as_names_a_search_result_or_a_filter(two_runs: tuple[dict, dict]) -> None:
    ids, _ = two_runs
    by_name = mlhooks.compare_runs(["fast", "slow"], backend="local")
    assert list(by_name["run_id"]) == [ids["fast"], ids["slow"]]
    found = mlhooks.search_runs(filter_string="params.eta0 = '0.01'", backend="local")
    assert list(mlhooks.compare_runs(found, backend="local")["run_name"]) == ["fast"]
    by_filter = mlhooks.compare_runs("metrics.val_r2 > -100", backend="local")
    assert set(by_filter["run_name"]) == {"slow", "fast"}
    assert list(mlhooks.compare_runs("status = 'FINISHED'", backend="local")["run_name"]) == [
        "fast",
        "slow",
    ]  # newest first
    train_by_hand("eta0=0.1", 0.1, backends="local")  # a name that looks like a comparison
    assert list(mlhooks.compare_runs("eta0=0.1", backend="local")["run_name"]) == ["eta0=0.1"]
    one = mlhooks.compare_runs([ids["slow"]], backend="local", metrics=["val_r2"])
    assert "params.model" in one.columns  # a single run shows all its params
    assert "val_rmse (final)" not in one.columns
    goals = mlhooks.compare_runs(["slow"], backend="local", goals={"val_rmse": "max"})
    assert goals["val_rmse (best)"][0] == max(two_runs[1]["slow"]["val_rmse"])


def test_unknown_runs_are_named(two_runs: tuple[dict, dict]) -> None:
    with pytest.raises(ValueError, match="'nope'"):
        mlhooks.compare_runs(["slow", "nope"], backend="local")
    with pytest.raises(ValueError, match="no runs"):
        mlhooks.compare_runs([], backend="local")


def test_plot_metric(two_runs: tuple[dict, dict]) -> None:
    ids, logged = two_runs
    figure = mlhooks.plot_metric([ids["slow"], ids["fast"]], "val_rmse", backend="local")
    (axes,) = figure.axes
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == [f"slow ({ids['slow'][:8]})", f"fast ({ids['fast'][:8]})"]
    lines = axes.get_lines()
    assert list(lines[0].get_xdata()) == list(range(6))
    assert list(lines[1].get_ydata()) == logged["fast"]["val_rmse"]
    assert axes.get_xlabel() == "step" and axes.get_ylabel() == "val_rmse"
    with pytest.raises(ValueError, match="metric 'nope'"):
        mlhooks.plot_metric(["slow"], "nope", backend="local")


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"mlhooks\[compare\]"):
        mlhooks.plot_metric(["x"], "loss", backend="local")
