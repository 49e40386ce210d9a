"""Capturing models: pickle, cloudpickle for code of the user's script, and a model that
nothing can capture set aside with its reason (issue 13, repro 12)."""

from __future__ import annotations

import json
import pickle
import sys
import threading
import types

import numpy as np
import pytest

import mlhooks
from mlhooks.backends.base import LogModel
from mlhooks.capture.models import capture, serialize
from mlhooks.core.types import ModelArtifact
from mlhooks.delivery.spool import decode, dumps, find_spools
from mlhooks.testing import RecordedRuns

pytest.importorskip("cloudpickle")  # MLflow brings it; without it pickle alone is used


class Plain:
    """A model class of an importable module: pickled by reference."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


def test_an_importable_model_is_pickled() -> None:
    payload, format = serialize(Plain())
    assert format == "pickle"
    assert pickle.loads(payload).weights == [1.0, 2.0]


def test_a_class_of_the_running_script_is_kept_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickle would name ``__main__.Scripted``, which another process (``mlhooks
    sync``) cannot find: cloudpickle keeps the class itself."""

    class Scripted:
        def predict(self, x: float) -> float:
            return 2 * x

    Scripted.__module__, Scripted.__qualname__ = "__main__", "Scripted"
    monkeypatch.setattr(sys.modules["__main__"], "Scripted", Scripted, raising=False)
    artifact = capture(Scripted(), "model")
    assert artifact.format == "cloudpickle"
    monkeypatch.delattr(sys.modules["__main__"], "Scripted")  # gone, as in another process
    assert artifact.load().predict(3.0) == 6.0


def test_a_class_of_the_script_in_a_spawned_process_is_kept_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a process ``multiprocessing`` spawned (a ``ddp_spawn`` rank), the script is the
    module ``__mp_main__``, which neither the writer service nor ``mlhooks sync`` has:
    its classes are kept by value too."""
    script = types.ModuleType("__mp_main__")

    class Scripted:
        def predict(self, x: float) -> float:
            return 2 * x

    Scripted.__module__, Scripted.__qualname__ = "__mp_main__", "Scripted"
    script.Scripted = Scripted  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__mp_main__", script)
    artifact = capture(Scripted(), "model")
    assert artifact.format == "cloudpickle"
    monkeypatch.delitem(sys.modules, "__mp_main__")  # gone, as in another process
    assert artifact.load().predict(3.0) == 6.0
    import cloudpickle

    assert "__mp_main__" not in cloudpickle.list_registry_pickle_by_value()


def test_a_closure_pickle_refuses_is_kept_by_value() -> None:
    factor = 3.0
    artifact = capture({"transform": lambda x: x * factor}, "model")
    assert artifact.format == "cloudpickle"
    assert artifact.load()["transform"](2.0) == 6.0


def test_a_model_nothing_can_pickle_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot log model 'model': a dict cannot be pickled"):
        capture({"guard": threading.Lock()}, "model")


def test_autologging_sets_an_unsaveable_model_aside_with_why_and_stores_the_rest(
    mlhooks_memory: RecordedRuns,
) -> None:
    session = mlhooks.plugin.FitSession("manual", "guarded")
    session.start()
    session.log_model({"guard": threading.Lock()}, name="model")
    session.log_metrics({"loss": 0.5}, step=0)
    session.end()
    run = mlhooks_memory.only_run()
    assert run.models == [] and run.latest() == {"loss": 0.5}
    assert run.info.status.value == "FINISHED"
    (spool,) = find_spools(mlhooks.LocalStore().root / ".spool" / "rejected")
    ((_, op, reason),) = list(spool.entries())
    assert isinstance(op, LogModel) and op.model.format == ModelArtifact.UNSAVEABLE
    assert reason is not None and "cannot be pickled" in reason and "_thread.lock" in reason


def test_a_spooled_model_keeps_its_sample_input_as_an_array() -> None:
    sample = np.arange(6.0).reshape(2, 3)
    artifact = capture(Plain(), "model", sample_input=sample, log_signature=True)
    op = decode(json.loads(dumps(LogModel("r", artifact))))
    assert isinstance(op, LogModel)
    again = op.model
    assert isinstance(again.metadata["sample_input"], np.ndarray)
    np.testing.assert_array_equal(again.metadata["sample_input"], sample)
    assert again.metadata["log_signature"] is True
    assert again.payload == artifact.payload and again.format == "pickle"
