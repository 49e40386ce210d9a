"""The explicit MlhooksCallback, with and without autolog()."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import mlhooks
from conftest import all_runs, history, models, only_run, trainer
from mlhooks_transformers import MlhooksCallback


def types_of(tracked: Any) -> list[str]:
    return [type(c).__name__ for c in tracked.callback_handler.callbacks]


def test_a_callback_given_to_the_trainer_tracks_it_and_leaves_hf_mlflow_out(client: Any) -> None:
    tracked = trainer(callbacks=[MlhooksCallback(log_every_n_steps=10)], report_to="mlflow")
    assert "MLflowCallback" not in types_of(tracked) and "MlhooksCallback" in types_of(tracked)
    tracked.train()

    run = only_run(client)  # none by Hugging Face's callback
    assert run.info.status == "FINISHED" and run.data.params["max_steps"] == "20"
    assert [step for step, _ in history(client, run, "loss")] == [10, 20]
    assert "model" in models(client, run)


def test_a_callback_of_ones_own_and_autolog_track_once(client: Any) -> None:
    mlhooks.autolog()
    tracked = trainer(callbacks=[MlhooksCallback(log_models=False)])
    tracked.train()
    assert types_of(tracked).count("MlhooksCallback") == 1  # none added beside the user's
    run = only_run(client)
    assert [step for step, _ in history(client, run, "loss")] == [5, 10, 15, 20]
    assert models(client, run) == {}  # the callback's option over autolog's


def test_a_callback_added_after_the_mlflow_callback_started_warns(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too late to leave Hugging Face's callback out: it opened its MLflow run (which
    mlhooks then logs into, as into any run of mlflow.start_run()) when the training
    began. The user is told; both write into that run (MLflow refuses the second value
    of a param, which mlhooks sets aside with a warning: not strict here)."""
    monkeypatch.setenv("MLHOOKS_STRICT", "0")
    tracked = trainer(report_to="mlflow")
    tracked.add_callback(MlhooksCallback(log_models=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracked.train()
        run = only_run(client)
    told = [str(w.message) for w in caught if issubclass(w.category, mlhooks.MlhooksWarning)]
    assert any("logged twice" in message for message in told), told
    steps = [step for step, _ in history(client, run, "loss")]
    # Both wrote each logged step; MLflow keeps one of two points that are the same in
    # key, step, value and millisecond, which these two writers' points sometimes are.
    assert sorted(set(steps)) == [5, 10, 15, 20]
    assert all(steps.count(step) in (1, 2) for step in steps), steps


def test_a_training_that_raised_ends_failed_when_the_next_one_begins(client: Any) -> None:
    from transformers import TrainerCallback

    class Stop(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise ZeroDivisionError("user code")

    ours = MlhooksCallback(log_models=False)
    failing = trainer(callbacks=[ours, Stop()])
    with pytest.raises(ZeroDivisionError):
        failing.train()
    failing.pop_callback(Stop)
    failing.train()  # no autolog: only the next training can tell the callback

    first, second = all_runs(client)
    assert first.info.status == "FAILED" and second.info.status == "FINISHED"
    assert ours.run_id is not None and second.data.tags["mlhooks.run_id"] == ours.run_id


def test_under_autolog_a_training_that_raises_ends_its_run_at_once(client: Any) -> None:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 6:
                raise KeyboardInterrupt

    mlhooks.autolog()
    with pytest.raises(KeyboardInterrupt):
        trainer(callbacks=[Interrupt()]).train()
    run = only_run(client)
    assert run.info.status == "KILLED"
    assert [step for step, _ in history(client, run, "loss")] == [5]


def test_options_are_checked_when_the_callback_is_made() -> None:
    with pytest.raises(ValueError, match="log_every_n_steps"):
        MlhooksCallback(log_every_n_steps=0)
