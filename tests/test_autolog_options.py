"""autolog() options, their MLHOOKS_* variables and per-framework overrides, as the
throwaway fakefw integration sees them."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import mlhooks
from fake_integration import FakeOptions, FakePlugin
from mlhooks import AutologConfig, MlhooksWarning
from mlhooks.core.config import current_config
from mlhooks.plugin import FrameworkOptions, Integration, settings_for
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
    assert isinstance(fakefw_settings, FakeOptions)
    assert fakefw_settings.log_models is True
    assert fakefw_settings.max_tuning_runs == 7
    assert settings_for("fakefw", FakeOptions) is fakefw_settings
    assert settings_for("other").log_models is False
    with pytest.raises(AttributeError, match="'FrameworkOptions' object has no attribute"):
        _ = settings_for("other").max_tuning_runs  # type: ignore[attr-defined]


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


# -- typed per-framework options -----------------------------------------------------------


def test_own_and_common_options_reach_the_integration_typed(
    fake: Any, mlhooks_memory: RecordedRuns
) -> None:
    mlhooks.autolog(
        log_every_n_steps=5,
        fakefw={"log_final_loss": False, "loss_name": "error", "log_every_n_steps": 2},
    )
    fit_once()
    run = mlhooks_memory.only_run()
    assert [point.value for point in run.history("error")] == [1.0, 0.5, 1 / 3]
    assert run.history("loss") == [] and run.history("final_loss") == []
    options = settings_for("fakefw", FakeOptions)
    assert (options.log_every_n_steps, options.loss_name) == (2, "error")
    assert settings_for("other").log_every_n_steps == 5


def test_an_unknown_option_names_the_valid_ones_and_the_near_miss(fake: Any) -> None:
    with pytest.raises(TypeError) as caught:
        mlhooks.autolog(fakefw={"max_tunning_runs": 3})
    message = str(caught.value)
    assert message.startswith(
        "autolog(fakefw={...}) got an unknown option 'max_tunning_runs'; "
        "did you mean 'max_tuning_runs'? The options of fakefw: "
        "log_final_loss, loss_name, max_tuning_runs, and the common ones: exclusive, "
    )
    for common in ("log_models", "log_datasets", "log_every_n_steps", "extra_tags"):
        assert common in message
    assert current_config() is None  # nothing was applied


def test_an_unknown_option_without_a_near_miss_still_lists_them(fake: Any) -> None:
    with pytest.raises(TypeError, match=r"unknown option 'colour'\. The options of fakefw: log_"):
        mlhooks.autolog(fakefw={"colour": "red"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tuning_runs": "3"}, r"'max_tuning_runs' must be int or None, not '3' \(str\)"),
        ({"max_tuning_runs": True}, r"'max_tuning_runs' must be int or None, not True \(bool\)"),
        ({"log_final_loss": "yes"}, r"'log_final_loss' must be bool, not 'yes' \(str\)"),
        ({"log_models": 0}, r"'log_models' must be bool, not 0 \(int\)"),
        ({"loss_name": "mse"}, "'loss_name' must be 'loss' or 'error', not 'mse'"),
        ({"extra_tags": {"team": 1}}, "'extra_tags' must be a dict of str to str"),
        ({"log_every_n_steps": 2.0}, "'log_every_n_steps' must be int or None, not 2.0"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_expected_type(
    fake: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=rf"^autolog\(fakefw=\{{\.\.\.\}}\): {message}"):
        mlhooks.autolog(fakefw=options)
    assert current_config() is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tuning_runs": -1}, "max_tuning_runs must be at least 0, not -1"),
        ({"log_every_n_steps": 0}, "log_every_n_steps must be at least 1, not 0"),
    ],
)
def test_a_value_the_declaration_refuses_is_a_value_error(
    fake: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=rf"^autolog\(fakefw=\{{\.\.\.\}}\): {message}$"):
        mlhooks.autolog(fakefw=options)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("backends", r"got 'backends', which applies to every framework: .*autolog\(backends="),
        ("silent", "got 'silent', which applies to every framework"),
        ("disable", r"autolog\(disable=True, frameworks=\['fakefw'\]\)"),
    ],
)
def test_an_option_of_every_framework_is_not_taken_per_framework(
    fake: Any, option: str, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        mlhooks.autolog(fakefw={option: True})


def test_the_common_arguments_of_autolog_are_typed_too() -> None:
    with pytest.raises(TypeError, match=r"autolog\(\): 'log_models' must be bool, not 'no'"):
        mlhooks.autolog(log_models="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'log_every_n_steps' must be int or None, not '5'"):
        mlhooks.autolog(log_every_n_steps="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unknown option 'log_modles'; did you mean 'log_models'"):
        mlhooks.autolog(log_modles=True)  # type: ignore[arg-type]


def test_options_of_a_framework_no_plugin_integrates_warn_and_wait_for_one(
    mlhooks_memory: RecordedRuns, mlhooks_plugin: Any
) -> None:
    with pytest.raises(TypeError, match=r"autolog\(fakefw=\{\.\.\.\}\): 'log_models' must be bool"):
        mlhooks.autolog(fakefw={"log_models": "no"})  # the common options are checked
    with pytest.warns(
        MlhooksWarning,
        match=r"autolog\(fakefw=\{\.\.\.\}\) gives options for 'fakefw', which no installed "
        r"plugin integrates \(installed: none\)\. Options other than the common ones",
    ):
        mlhooks.autolog(fakefw={"log_models": False, "loss_name": "error"})
    assert settings_for("fakefw") == FrameworkOptions(log_models=False)

    mlhooks_plugin(FakePlugin(), name="late-fakefw")  # registered now: checked and applied
    fit_once()
    run = mlhooks_memory.only_run()
    assert run.history("error") and run.models == []


def test_a_later_integration_whose_options_are_wrong_is_not_patched(
    mlhooks_memory: RecordedRuns, mlhooks_plugin: Any
) -> None:
    with pytest.warns(MlhooksWarning, match="no installed plugin integrates"):
        mlhooks.autolog(fakefw={"loss_nmae": "error"})
    with pytest.warns(
        MlhooksWarning, match=r"not tracking fakefw: .*unknown option 'loss_nmae'; did you mean"
    ):
        plugin = mlhooks_plugin(FakePlugin(), name="late-fakefw")
    assert not plugin.integration.is_patched
    fit_once()
    assert mlhooks_memory.runs == {}


def test_a_misspelt_framework_name_suggests_the_installed_one(fake: Any) -> None:
    with pytest.warns(MlhooksWarning, match=r"\(installed: fakefw\); did you mean 'fakefw'\?"):
        mlhooks.autolog(fakfw={"log_models": False})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "MLHOOKS_LOG_EVERY_N_STEPS='0' must be at least 1"),
        ("ten", "MLHOOKS_LOG_EVERY_N_STEPS='ten' is not an integer"),
    ],
)
def test_a_bad_log_every_n_steps_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_EVERY_N_STEPS", value)
    with pytest.raises(ValueError, match=message):
        mlhooks.autolog()


def test_environment_values_reach_the_typed_options(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_LOG_MODELS", "0")
    monkeypatch.setenv("MLHOOKS_LOG_EVERY_N_STEPS", "3")
    mlhooks.autolog(fakefw={"log_models": True})
    options = settings_for("fakefw", FakeOptions)
    assert (options.log_models, options.log_every_n_steps) == (True, 3)
    assert settings_for("other").log_models is False


def test_values_are_converted_to_the_declared_types() -> None:
    @dataclass(frozen=True)
    class Declared(FrameworkOptions):
        metrics: tuple[str, ...] = ()
        weights: Mapping[str, float] = field(default_factory=dict)
        rate: float = 0.1

    options = Declared.build("mine", {"metrics": ["a", "b"], "weights": {"x": 1}, "rate": 2})
    assert options.metrics == ("a", "b")
    assert options.weights == {"x": 1.0} and isinstance(options.weights["x"], float)
    assert options.rate == 2.0 and isinstance(options.rate, float)
    with pytest.raises(TypeError, match="'metrics' must be a list of str, not 'a'"):
        Declared.build("mine", {"metrics": "a"})


def test_the_common_defaults_are_autologs_defaults() -> None:
    assert AutologConfig().for_framework("any") == FrameworkOptions()


def test_an_integration_must_declare_its_options_as_a_dataclass() -> None:
    class Undecorated(FrameworkOptions):
        colour: str = "red"

    class NotOptions:
        pass

    for declared, message in (
        (Undecorated, "must be decorated with @dataclass"),
        (NotOptions, "must be a subclass of FrameworkOptions"),
    ):

        class Broken(Integration):
            name = "broken"
            modules = ("broken",)
            options = declared  # type: ignore[assignment]

        with pytest.raises(TypeError, match=message):
            Broken()


def test_options_of_a_session_without_the_declaration_are_the_defaults() -> None:
    options = FakeOptions.of(FrameworkOptions(log_models=False))
    assert options == FakeOptions(log_models=False)
