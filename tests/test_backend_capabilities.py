"""Backends receive only what they keep, say once per run what they skip, and say
what they keep through ``mlhooks.describe_backends()``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import ClassVar

import pytest

import mlhooks
import mlhooks.plugin
from mlhooks import Capability
from mlhooks.backends.memory import MemoryBackend
from mlhooks.plugin import FitSession, ModelArtifact
from mlhooks.testing import RecordedRuns


class ScalarsOnly(MemoryBackend):
    name = "scalars-only"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.METRICS, Capability.PARAMS, Capability.TAGS}
    )
    capability_notes: ClassVar[dict[Capability, str]] = {Capability.TAGS: "as text"}


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mlhooks"]


def log_everything(tmp_path: Path, name: str, backends: list[mlhooks.plugin.Backend]) -> str:
    plot = tmp_path / "plot.txt"
    plot.write_text("not an image")
    with mlhooks.start_run(name, backends=backends) as run:
        mlhooks.log_metric("loss", 0.5, step=1)
        for _ in range(2):  # the second of each kind says nothing more
            mlhooks.log_artifact(plot)
            mlhooks.log_dataset([[1.0, 2.0]], name="X")
            session = FitSession("fw", "fit")
            session.start()
            session.model_saved(ModelArtifact(name="clf", flavor="pickle", payload=b"x"))
            session.end()
    return run.run_id


def test_unsupported_data_gives_one_notice_per_run_and_kind(
    mlhooks_memory: RecordedRuns, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    partial, full = ScalarsOnly(), mlhooks_memory.backend
    first = log_everything(tmp_path, "first", [partial, full])
    mlhooks.flush()
    said = notices(caplog)
    assert len(said) == 3, said
    assert (
        "mlhooks: backend 'scalars-only' does not keep models, so model 'clf' of run 'first' "
        "is not stored there (nor later models of this run); it goes to memory." in said
    )
    assert any("dataset 'X'" in n and "does not keep datasets" in n for n in said)
    assert any("artifact 'plot.txt'" in n and "does not keep artifacts" in n for n in said)
    kept = partial.run(first)
    assert kept.models == [] and kept.datasets == [] and kept.artifacts == []
    assert [m.value for m in kept.history("loss")] == [0.5]
    assert len(full.run(first).models) == 2

    caplog.clear()
    log_everything(tmp_path, "second", [partial, full])
    assert len(notices(caplog)) == 3  # once per run: a new run is told again


def test_a_notice_says_when_no_backend_keeps_it(
    mlhooks_clean: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    log_everything(tmp_path, "alone", [ScalarsOnly()])
    assert all(n.endswith("no backend of this run keeps it.") for n in notices(caplog))


def test_notices_are_never_errors_and_respect_silent(
    mlhooks_clean: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -W error: a notice is still no exception
        log_everything(tmp_path, "strict", [ScalarsOnly()])  # MLHOOKS_STRICT=1 in CI
    assert notices(caplog)
    caplog.clear()
    mlhooks.autolog(silent=True)
    log_everything(tmp_path, "quiet", [ScalarsOnly()])
    assert notices(caplog) == []


def test_describe_backends_lists_name_location_and_capabilities(mlhooks_clean: None) -> None:
    partial = ScalarsOnly()
    described = mlhooks.describe_backends(["local", partial])
    assert [d.name for d in described] == ["local", "scalars-only"]
    local, scalars = described
    assert local.location.startswith("local store at ")
    assert local.keeps == ("metrics", "params", "tags", "artifacts", "models", "datasets")
    assert local.skips == ()
    assert scalars.keeps == ("metrics", "params", "tags")
    assert scalars.skips == ("artifacts", "models", "datasets")
    assert scalars.to_dict() == {
        "name": "scalars-only",
        "location": "scalars-only",
        "keeps": ["metrics", "params", "tags"],
        "skips": ["artifacts", "models", "datasets"],
        "notes": {"tags": "as text"},
    }


def test_describe_backends_follows_autolog_and_the_environment(
    mlhooks_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_BACKENDS", "memory,local")
    assert [d.name for d in mlhooks.describe_backends()] == ["memory", "local"]
    mlhooks.autolog(backends=["local"])
    assert [d.name for d in mlhooks.describe_backends()] == ["local"]
    with pytest.raises(ValueError, match="unknown backend 'nowhere'"):
        mlhooks.describe_backends(["nowhere"])
