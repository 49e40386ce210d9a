"""System metrics: sampled on a thread while the run is active, with increasing steps."""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

import pytest

import mlhooks
from mlhooks.capture import system_metrics
from mlhooks.testing import RecordedRuns

pytest.importorskip("psutil")

EXPECTED = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlhooks-system"]


def test_a_three_second_run_is_sampled_until_it_ends(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    monkeypatch.setenv("MLHOOKS_SYSTEM_METRICS_INTERVAL", "0.5")
    with mlhooks.start_run("sampled", log_system_metrics=True):
        time.sleep(3)
    assert not sampler_threads() and not system_metrics.active_samplers()
    run = mlhooks_memory.only_run()
    assert set(run.metrics) >= EXPECTED
    for key in EXPECTED:
        steps = [point.step for point in run.history(key)]
        assert steps == list(range(len(steps))) and len(steps) >= 3, (key, steps)
    memory = [p.value for p in run.history("system/system_memory_usage_percentage")]
    assert all(0 < value <= 100 for value in memory)
    stamps = [p.timestamp for p in run.history("system/cpu_utilization_percentage")]
    assert stamps == sorted(stamps)


def test_off_by_default_and_for_nested_runs(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    monkeypatch.setenv("MLHOOKS_SYSTEM_METRICS_INTERVAL", "0.1")
    with mlhooks.start_run("plain"):
        pass
    with mlhooks.start_run("parent", log_system_metrics=True):
        with mlhooks.start_run("child", nested=True, log_system_metrics=True):
            assert len(system_metrics.active_samplers()) == 1
    assert mlhooks_memory.run_named("plain").metrics == {}
    assert mlhooks_memory.run_named("child").metrics == {}
    assert mlhooks_memory.run_named("parent").metrics  # at least the last sample


def test_autolog_option_and_environment(
    fake: Any, monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    mlhooks.autolog(log_system_metrics=True)
    importlib.import_module("fakefw").Model().fit([1.0])
    assert set(mlhooks_memory.only_run().metrics) >= EXPECTED
    mlhooks.autolog(disable=True)
    monkeypatch.setenv("MLHOOKS_LOG_SYSTEM_METRICS", "1")
    with mlhooks.start_run("from-env"):
        pass
    assert set(mlhooks_memory.run_named("from-env").metrics) >= EXPECTED


def test_a_missing_psutil_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psutil", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"mlhooks\[system\]"):
        mlhooks.start_run("x", log_system_metrics=True)
    with pytest.raises(ImportError, match=r"mlhooks\[system\]"):
        mlhooks.autolog(log_system_metrics=True)
    assert mlhooks.active_run() is None
