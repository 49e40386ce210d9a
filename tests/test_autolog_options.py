"""autolog() options, their MLHOOKS_* variables and per-framework overrides, as the
throwaway fakefw integration sees them."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest

import mlhooks
from mlhooks import AutologConfig, MlhooksWarning
from mlhooks.autologging.autolog import settings_for
from mlhooks.testing import RecordedRuns


def fit_once() -> None:
    importlib.import_module("fakefw").Model().fit([1.0, 2.0])


def test_defaults_log_everything(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog()
    fit_once()
    run = mlhooks_memory.only_run()
    assert run.info.name == "Model" and run.info.managed
    assert run.params == {"rounds": "3", "lr": "0.1"}
    assert run.tags["mlhooks.framework"] == "fakefw"
    assert [(m.step, m.value) for m in run.history("loss")] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert [d.name for d in run.datasets] == ["X"]
    assert [m.name for m in run.models] == ["model"]
    assert run.models[0].load().history == [1.0, 0.5, 1 / 3]
    assert run.models[0].metadata["log_input_example"] is False
    assert run.models[0].metadata["log_signature"] is True


def test_model_options_travel_with_the_model(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog(log_input_examples=True, log_model_signatures=False)
    fit_once()
    metadata = mlhooks_memory.only_run().models[0].metadata
    assert metadata["log_input_example"] is True and metadata["log_signature"] is False


@pytest.mark.parametrize(
    "how",
    [
        {"log_models": False, "log_datasets": False},
        {"fakefw": {"log_models": False, "log_datasets": False}},
        "environment",
    ],
    ids=["arguments", "per-framework", "environment"],
)
def test_models_and_datasets_can_be_switched_off(
    fake: Any, mlhooks_memory: RecordedRuns, monkeypatch: pytest.MonkeyPatch, how: Any
) -> None:
    if how == "environment":
        monkeypatch.setenv("MLHOOKS_LOG_MODELS", "false")
        monkeypatch.setenv("MLHOOKS_LOG_DATASETS", "0")
        mlhooks.autolog()
    else:
        mlhooks.autolog(**how)
    fit_once()
    run = mlhooks_memory.only_run()
    assert run.models == [] and run.datasets == []
    assert run.history("loss")


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_MODELS", "0")
    monkeypatch.setenv("MLHOOKS_LOG_EVERY_N_STEPS", "25")
    monkeypatch.setenv("MLHOOKS_FRAMEWORKS", "sklearn, xgboost")
    config = AutologConfig.resolve(log_models=True)
    assert config.log_models is True
    assert config.log_every_n_steps == 25
    assert config.frameworks == ("sklearn", "xgboost")


def test_per_framework_options_include_their_own(fake: Any) -> None:
    mlhooks.autolog(log_models=False, fakefw={"log_models": True, "max_tuning_runs": 7})
    fakefw_settings = settings_for("fakefw")
    assert fakefw_settings.log_models is True
    assert fakefw_settings.get("max_tuning_runs") == 7
    assert settings_for("other").log_models is False
    with pytest.raises(AttributeError, match="no autolog option 'nope' for fakefw"):
        _ = fakefw_settings.nope


def test_extra_tags_reach_managed_and_user_runs(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog(extra_tags={"team": "vision"})
    fit_once()
    with mlhooks.start_run("mine"):
        fit_once()
    assert {r.tags.get("team") for r in mlhooks_memory.runs.values()} == {"vision"}


def test_autolog_backends_choose_where_runs_go(fake: Any, mlhooks_clean: None) -> None:
    backend = mlhooks.backends.memory.MemoryBackend()
    mlhooks.autolog(backends=[backend])
    fit_once()
    mlhooks.flush()
    assert len(backend.runs) == 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"backends": ["nope"]}, ValueError, "unknown backend 'nope'"),
        ({"log_every_n_steps": 0}, ValueError, "log_every_n_steps must be at least 1"),
        ({"log_modles": True}, TypeError, "unknown option 'log_modles'"),
        ({"fakefw": True}, TypeError, "unknown option 'fakefw'.*given as a dict"),
        ({"backends": [42]}, TypeError, "takes names or mlhooks.plugin.Backend objects"),
    ],
)
def test_bad_options_fail_at_autolog_with_a_clear_error(
    fake: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        mlhooks.autolog(**options)
    assert mlhooks.core.config.current_config() is None


def test_a_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_MODELS", "maybe")
    with pytest.raises(ValueError, match="MLHOOKS_LOG_MODELS='maybe' is not a boolean"):
        mlhooks.autolog()


def test_silent_mutes_autologging_warnings(
    fake: Any, mlhooks_memory: RecordedRuns, lenient: None
) -> None:
    mlhooks.autolog(silent=True)
    fake.integration.fit_handler.fail_in = "finish"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_once()  # would warn
    assert caught == []
    mlhooks.autolog(disable=True)
    mlhooks.autolog()
    with pytest.warns(MlhooksWarning):
        fit_once()


def test_the_default_backend_is_local_without_the_mlflow_plugin(
    fake: Any, mlhooks_clean: None
) -> None:
    mlhooks.autolog()
    fit_once()
    mlhooks.flush()
    store = mlhooks.LocalStore()
    (run,) = store.runs()
    assert run.name == "Model"
    assert store.get_run(run.run_id).history("loss")
