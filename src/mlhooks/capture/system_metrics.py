"""System metrics: CPU, memory, disk, network and GPU sampled while a run is active.

``start_run(log_system_metrics=True)`` or ``autolog(log_system_metrics=True)`` (or
``MLHOOKS_LOG_SYSTEM_METRICS=1``) starts one sampler thread per top-level run; every
``MLHOOKS_SYSTEM_METRICS_INTERVAL`` seconds (10 by default) it reports ``system/*``
metrics (MLflow's names, so that its UI groups them) at steps 0, 1, 2, ... A last
sample is taken when the run ends, then the thread stops. CPU, memory, disk and
network come from psutil (``pip install 'mlhooks[system]'``); GPU utilisation and
memory from pynvml, only when it imports and finds a GPU.

Runs opened with ``mlflow.start_run(log_system_metrics=True)`` are sampled by MLflow
itself; mlhooks does not sample the runs it adopts.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

from mlhooks.core import settings
from mlhooks.core.errors import report_background_error
from mlhooks.core.host import host
from mlhooks.core.types import RunInfo, now_ms

DEFAULT_INTERVAL = 10.0
_MB = 1024 * 1024


def wanted(option: bool | None) -> bool:
    """Whether to sample: ``option``, else ``MLHOOKS_LOG_SYSTEM_METRICS``, else False.
    ImportError naming the extra when psutil is missing."""
    if option is None:
        option = settings.get("MLHOOKS_LOG_SYSTEM_METRICS")
    if option:
        require_psutil()
    return option


def require_psutil() -> Any:
    try:
        import psutil
    except ImportError:
        raise ImportError(
            "log_system_metrics needs psutil: pip install 'mlhooks[system]'"
        ) from None
    return psutil


def interval_from_env() -> float:
    value: float = settings.get("MLHOOKS_SYSTEM_METRICS_INTERVAL")
    return value


class _Gpus:
    """GPU readings through pynvml, when it imports and finds devices."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.nvml = pynvml
        except Exception:  # noqa: BLE001 - no pynvml, no driver or no GPU: no GPU metrics
            self.handles = []

    def read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for index, handle in enumerate(self.handles):
            utilization = self.nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            values[f"system/gpu_{index}_utilization_percentage"] = float(utilization.gpu)
            values[f"system/gpu_{index}_memory_usage_megabytes"] = memory.used / _MB
            values[f"system/gpu_{index}_memory_usage_percentage"] = (
                100.0 * memory.used / memory.total if memory.total else 0.0
            )
        return values


class Sampler:
    """Samples system metrics into one run on a daemon thread until :meth:`stop`."""

    def __init__(self, run: RunInfo, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.step = 0
        self._psutil = require_psutil()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._disk_path = os.getcwd()
        self._gpus: _Gpus | None = None
        self._network_start: Any = None
        self._thread = threading.Thread(target=self._loop, name="mlhooks-system", daemon=True)

    def start(self) -> None:
        self._psutil.cpu_percent(interval=None)  # the first reading only sets the baseline
        self._network_start = self._psutil.net_io_counters()
        self._thread.start()

    def _loop(self) -> None:
        self._gpus = _Gpus()
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Report one reading at the next step (never raises)."""
        try:
            values = self.read()
            with self._lock:
                step, self.step = self.step, self.step + 1
            host.emit("on_metrics", self.run, values, step, now_ms())
        except Exception as error:  # noqa: BLE001 - a background thread never raises
            report_background_error("system metrics", error)

    def read(self) -> dict[str, float]:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        disk = shutil.disk_usage(self._disk_path)
        values = {
            "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
            "system/system_memory_usage_megabytes": (memory.total - memory.available) / _MB,
            "system/system_memory_usage_percentage": float(memory.percent),
            "system/disk_usage_percentage": 100.0 * disk.used / disk.total if disk.total else 0.0,
            "system/disk_usage_megabytes": disk.used / _MB,
            "system/disk_available_megabytes": disk.free / _MB,
        }
        network = psutil.net_io_counters()
        if network is not None and self._network_start is not None:
            values["system/network_receive_megabytes"] = (
                network.bytes_recv - self._network_start.bytes_recv
            ) / _MB
            values["system/network_transmit_megabytes"] = (
                network.bytes_sent - self._network_start.bytes_sent
            ) / _MB
        if self._gpus is not None:
            values.update(self._gpus.read())
        return values

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then take a last sample (so short runs have one)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.sample()


_samplers: dict[str, Sampler] = {}
_lock = threading.Lock()


def start(run: RunInfo, interval: float | None = None) -> None:
    """Sample system metrics into ``run`` until :func:`stop`."""
    sampler = Sampler(run, interval if interval is not None else interval_from_env())
    with _lock:
        if run.run_id in _samplers:
            return
        _samplers[run.run_id] = sampler
    sampler.start()


def stop(run: RunInfo) -> None:
    """Stop sampling ``run`` (called before ``on_run_end``); nothing when not sampled."""
    with _lock:
        sampler = _samplers.pop(run.run_id, None)
    if sampler is not None:
        sampler.stop()


def active_samplers() -> list[str]:
    """Run ids being sampled (for tests and ``mlhooks doctor``)."""
    with _lock:
        return list(_samplers)
