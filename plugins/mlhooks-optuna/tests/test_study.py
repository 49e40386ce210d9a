"""A study in a real sqlite MLflow store: the study's run, a child run per trial, the
best trial, and what each trial's state makes of its run."""

from __future__ import annotations

import math

import optuna
import pytest
from sklearn.linear_model import Ridge

import mlhooks
from conftest import Store, X, Y
from mlhooks.testing import RecordedRuns
from mlhooks_mlflow import RUN_ID_TAG


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    for step in range(4):
        trial.report((x - 2) ** 2 + 4 - step, step)
    trial.set_user_attr("kind_was", kind)
    return (x - 2) ** 2


def seeded_study(**kwargs: object) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1), **kwargs)  # type: ignore[arg-type]


def test_a_study_is_a_parent_run_with_a_child_run_per_trial(autolog: None, store: Store) -> None:
    study = seeded_study(study_name="quadratic")
    study.optimize(quadratic, n_trials=8)

    parent = store.study_run()
    assert parent.info.run_name == "quadratic"
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {
        "sampler": "TPESampler",
        "pruner": "MedianPruner",
        "direction": "minimize",
    }
    assert parent.data.tags["optuna.study.name"] == "quadratic"
    assert study.user_attrs["mlhooks.run_id"] == parent.data.tags[RUN_ID_TAG]

    children = store.children(parent)
    assert [run.info.run_name for run in children] == [f"trial-{n}" for n in range(8)]
    for run, trial in zip(children, study.trials, strict=True):
        assert run.info.status == "FINISHED"
        assert run.data.params == {"x": str(trial.params["x"]), "kind": trial.params["kind"]}
        assert run.data.metrics["value"] == trial.value
        assert store.history(run, "intermediate_value") == sorted(trial.intermediate_values.items())
        tags = run.data.tags
        assert tags["optuna.trial.number"] == str(trial.number)
        assert tags["optuna.trial.state"] == "COMPLETE"
        assert tags["optuna.user_attr.kind_was"] == trial.params["kind"]
        assert tags["optuna.distribution.x"].startswith("FloatDistribution(")

    # The best value at each trial that improved on it, by trial number.
    improved, best = [], math.inf
    for trial in study.trials:
        if trial.value < best:
            best = trial.value
            improved.append((trial.number, trial.value))
    assert store.history(parent, "best_value") == improved
    best_run = children[study.best_trial.number]
    assert parent.data.tags["optuna.best_trial.number"] == str(study.best_trial.number)
    assert parent.data.tags["optuna.best_trial.run_id"] == best_run.data.tags[RUN_ID_TAG]


def test_pruned_and_failed_trials_end_as_optuna_records_them(autolog: None, store: Store) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 100)
        trial.report(float(x), 0)
        trial.report(float(x) / 2, 1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("a bad region")
        if trial.number == 3:
            return math.nan  # Optuna fails the trial: no exception
        return float(x)

    study = optuna.create_study(study_name="states")
    study.optimize(objective, n_trials=5, catch=(ValueError,))
    assert [t.state.name for t in study.trials] == [
        "COMPLETE", "PRUNED", "FAIL", "FAIL", "COMPLETE",
    ]  # fmt: skip

    parent = store.study_run()
    assert parent.info.status == "FINISHED"  # the study went on
    children = store.children(parent)
    states = [(r.data.tags["optuna.trial.state"], r.info.status) for r in children]
    assert states == [
        ("COMPLETE", "FINISHED"),
        ("PRUNED", "FINISHED"),
        ("FAIL", "FAILED"),
        ("FAIL", "FAILED"),
        ("COMPLETE", "FINISHED"),
    ]
    pruned, raised, nan = children[1], children[2], children[3]
    assert pruned.data.metrics["value"] == study.trials[1].value  # its last reported value
    assert pruned.data.params == {"x": str(study.trials[1].params["x"])}
    assert "value" not in raised.data.metrics and "value" not in nan.data.metrics
    assert raised.data.params == {"x": str(study.trials[2].params["x"])}
    assert len(store.history(raised, "intermediate_value")) == 2


@pytest.mark.parametrize("error_type", [RuntimeError, KeyboardInterrupt])
def test_an_uncaught_exception_propagates_unchanged(
    autolog: None, store: Store, error_type: type[BaseException]
) -> None:
    error = error_type("the user's")

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        if trial.number == 2:
            raise error
        return 1.0

    study = optuna.create_study()
    with pytest.raises(error_type) as raised:
        study.optimize(objective, n_trials=5)
    assert raised.value is error
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]

    expected = "KILLED" if error_type is KeyboardInterrupt else "FAILED"
    parent = store.study_run()
    assert parent.info.status == expected
    statuses = [run.info.status for run in store.children(parent)]
    assert statuses == ["FINISHED", "FINISHED", expected]


def test_multi_objective_values_by_name_and_the_pareto_front(autolog: None, store: Store) -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, (1 - x) ** 2

    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.set_metric_names(["cost", "error"])
    study.optimize(objective, n_trials=6)

    parent = store.study_run()
    assert parent.data.params["directions"] == "minimize,minimize"
    front = sorted(t.number for t in study.best_trials)
    assert parent.data.tags["optuna.best_trials"] == ",".join(map(str, front))
    for run, trial in zip(store.children(parent), study.trials, strict=True):
        assert run.data.metrics == {"cost": trial.values[0], "error": trial.values[1]}


def test_optimize_again_continues_the_studys_run(autolog: None, store: Store) -> None:
    study = seeded_study(study_name="twice", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)

    parent = store.study_run()
    assert parent.info.status == "FINISHED"
    children = store.children(parent)
    assert [run.info.run_name for run in children] == [f"trial-{n}" for n in range(5)]
    best = study.best_trial
    assert store.history(parent, "best_value")[-1] == (best.number, best.value)


def test_inside_a_users_run_the_study_logs_there(autolog: None, store: Store) -> None:
    study = optuna.create_study(study_name="inside")
    with mlhooks.start_run("tuning") as users:
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        assert mlhooks.active_run() is users.info

    (parent,) = store.top_level()
    assert parent.info.run_name == "tuning"
    assert parent.data.params["sampler"] == "TPESampler"
    assert len(store.children(parent)) == 3
    assert "mlhooks.run_id" not in study.user_attrs  # the user's run is not the study's


def test_options_one_run_per_call_and_no_intermediate_values(store: Store) -> None:
    mlhooks.autolog(optuna={"share_study_run": False, "log_intermediate_values": False})
    try:
        study = optuna.create_study(study_name="unshared")
        study.optimize(quadratic, n_trials=2)
        study.optimize(quadratic, n_trials=2)
    finally:
        mlhooks.autolog(disable=True)

    parents = store.top_level()
    assert [run.info.run_name for run in parents] == ["unshared", "unshared"]
    assert study.user_attrs == {}
    for parent in parents:
        children = store.children(parent)
        assert len(children) == 2
        assert all("intermediate_value" not in run.data.metrics for run in children)


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_the_memory_and_local_stores_keep_the_same_structure(
    mlhooks_memory: RecordedRuns, backend: str
) -> None:
    mlhooks.autolog(**({"backends": "local"} if backend == "local" else {}))
    try:
        study = optuna.create_study(study_name="stores")
        study.optimize(quadratic, n_trials=3)
    finally:
        mlhooks.autolog(disable=True)

    assert mlhooks.flush(60)
    if backend == "memory":
        runs = list(mlhooks_memory.runs.values())
    else:
        local = mlhooks.LocalStore()
        runs = [local.get_run(run_id) for run_id in local.run_ids()]
    (parent,) = [run for run in runs if run.info.parent_id is None]
    children = [run for run in runs if run.info.parent_id == parent.info.run_id]
    assert parent.info.name == "stores"
    assert parent.params["sampler"] == "TPESampler"
    assert sorted(run.info.name for run in children) == ["trial-0", "trial-1", "trial-2"]
    assert len(runs) == 4
    for run in children:
        trial = study.trials[int(run.tags["optuna.trial.number"])]
        assert run.latest()["value"] == trial.value
        steps = [(point.step, point.value) for point in run.history("intermediate_value")]
        assert steps == sorted(trial.intermediate_values.items())


def test_common_options_extra_tags_and_every_n_steps(mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog(extra_tags={"team": "search"}, optuna={"log_every_n_steps": 2})
    try:
        optuna.create_study(study_name="options").optimize(quadratic, n_trials=2)
    finally:
        mlhooks.autolog(disable=True)

    runs = list(mlhooks_memory.runs.values())
    assert len(runs) == 3
    assert all(run.tags["team"] == "search" for run in runs)
    for run in runs:
        if run.info.parent_id is not None:
            assert [p.step for p in run.history("intermediate_value")] == [0, 2]


def test_a_fit_param_named_as_a_trial_param_keeps_the_first_value_with_one_warning(
    mlhooks_memory: RecordedRuns,
) -> None:
    def objective(trial: optuna.Trial) -> float:
        alpha = trial.suggest_float("alpha", 0.1, 1.0)
        return float(Ridge(alpha=alpha * 10).fit(X, Y).score(X, Y))  # not the trial's value

    mlhooks.autolog()
    try:
        study = optuna.create_study()
        with pytest.warns(mlhooks.MlhooksWarning, match="param 'alpha' of run 'trial-0'"):
            study.optimize(objective, n_trials=1)
    finally:
        mlhooks.autolog(disable=True)

    (trial_run,) = [run for run in mlhooks_memory.runs.values() if run.info.parent_id]
    assert float(trial_run.params["alpha"]) == study.trials[0].params["alpha"] * 10  # the fit's
    assert trial_run.latest()["value"] == study.trials[0].value
