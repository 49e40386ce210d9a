"""Mistakes in plugins are caught at registration, named, and leave mlhooks working."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import mlhooks
from mlhooks import Capability, MlhooksWarning
from mlhooks.backends.memory import MemoryBackend
from mlhooks.testing import RecordedRuns


class Listener:
    @mlhooks.hookimpl
    def on_run_start(self, run: mlhooks.RunInfo) -> None:
        pass


def test_a_class_instead_of_an_instance_is_refused() -> None:
    with pytest.warns(MlhooksWarning, match="instance or a module, not a class"):
        assert mlhooks.register(Listener) is None
    assert "Listener" not in mlhooks.list_plugins()


def test_a_misspelt_hook_is_refused() -> None:
    class Typo:
        @mlhooks.hookimpl
        def on_metric(self, run: Any) -> None:  # the hook is on_metrics
            pass

    plugin = Typo()
    with pytest.warns(MlhooksWarning, match="on_metric"):
        assert mlhooks.register(plugin, name="typo") is None
    assert "typo" not in mlhooks.list_plugins()
    with mlhooks.start_run("still works"):
        mlhooks.log_metric("loss", 1.0)


def test_a_failing_registration_hook_rolls_the_plugin_back() -> None:
    class HalfBackend(MemoryBackend):
        name: ClassVar[str] = "half"

    class Half:
        @mlhooks.hookimpl
        def register_backends(self, register: Callable[..., None]) -> None:
            register("half", HalfBackend)
            raise RuntimeError("then it broke")

    with pytest.warns(MlhooksWarning, match="then it broke"):
        assert mlhooks.register(Half(), name="half") is None
    assert "half" not in mlhooks.list_plugins()
    with pytest.raises(ValueError, match="unknown backend 'half'"):
        mlhooks.backend("half")


def test_a_backend_must_be_registered_under_its_own_name() -> None:
    class Named:
        @mlhooks.hookimpl
        def register_backends(self, register: Callable[..., None]) -> None:
            register("elsewhere", MemoryBackend)  # MemoryBackend.name is "memory"

    with pytest.warns(MlhooksWarning, match="registered as 'elsewhere' names itself 'memory'"):
        assert mlhooks.register(Named(), name="named") is None


def test_backends_receive_only_what_they_declare(mlhooks_memory: RecordedRuns) -> None:
    class TagsOnly(MemoryBackend):
        capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TAGS})

    tags_only = TagsOnly()
    with mlhooks.start_run("split", backends=[tags_only, mlhooks_memory.backend]) as run:
        mlhooks.log_param("lr", 0.1)
        mlhooks.set_tag("stage", "dev")
        mlhooks.log_metric("loss", 1.0)
        mlhooks.log_dataset([[1.0, 2.0]], name="X")
    mlhooks.flush()
    kept = tags_only.run(run.run_id)
    assert kept.tags == {"stage": "dev"}
    assert kept.params == {} and kept.metrics == {} and kept.datasets == []
    full = mlhooks_memory.backend.run(run.run_id)
    assert full.params == {"lr": "0.1"} and full.history("loss") and full.datasets
