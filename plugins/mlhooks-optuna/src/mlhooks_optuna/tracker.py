"""One tracked ``optimize`` call: the objective's wrapper and Optuna's callback that
open and end the trials' runs, and the study's best, updated as it improves.

* The wrapper opens the trial's run (a child of the study's run, active on the thread
  that runs the trial, also with ``n_jobs`` > 1) and runs the user's objective in
  :func:`~mlhooks.plugin.user_code`, so that its fits are tracked, into the trial's
  run. When the objective raises (but ``TrialPruned``), the run ends there: FAILED
  (KILLED for Ctrl-C), and the exception goes on unchanged.
* The callback receives each finished trial from Optuna: its params, state and
  value(s) end its run, and a single-objective study's best value and best trial are
  updated on the study's run when the trial improves on the study's best.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from optuna.exceptions import TrialPruned
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from mlhooks.plugin import FitSession, report_internal_error, user_code

from . import studies
from .options import OptunaOptions
from .trials import Outcome, TrialRun, value_names

SITE = "optuna trial tracking"
"""Where our failures during trials are reported: one warning however many trials."""

_reporting: dict[int, TrialRun] = {}
"""The run of each running tracked trial, by ``id()`` of its ``Trial``."""


def running_trial(trial: Any) -> TrialRun | None:
    """The run of ``trial`` (a ``Trial``) while it runs tracked, else None."""
    return _reporting.get(id(trial))


class StudyTracker:
    """One tracked ``optimize`` call: its trials' runs and the study's best."""

    def __init__(self, session: FitSession, study: Any, options: OptunaOptions) -> None:
        assert session.fit is not None
        self.session = session
        self.run = session.fit.run
        self.study = study
        self.options = options
        directions = list(study.directions)
        self.single = len(directions) == 1
        self.maximize = directions[0] == StudyDirection.MAXIMIZE
        self.names = value_names(study.metric_names, len(directions))
        self._trials: dict[int, TrialRun] = {}
        self._lock = threading.Lock()
        self._best: float | None = None
        self._best_step = -1
        self._untagged: int | None = None
        """The study's best trial when it is not tagged yet (its callback not yet run)."""
        self._shared = studies.shareable(study)

    # -- the objective ----------------------------------------------------------------

    def objective(self, func: Callable[[Trial], Any]) -> Callable[[Trial], Any]:
        """``func``, run in its trial's run."""

        @functools.wraps(func)
        def tracked_objective(trial: Trial) -> Any:
            trial_run = self._begin(trial)
            try:
                with user_code():
                    return func(trial)
            except BaseException as error:
                if trial_run is not None:
                    self._raised(trial_run, trial, error)
                raise

        return tracked_objective

    def _begin(self, trial: Trial) -> TrialRun | None:
        try:
            trial_run = TrialRun(
                trial.number,
                self.run,
                self.session.settings,
                log_intermediate=self.options.log_intermediate_values and self.single,
            )
        except Exception as error:  # noqa: BLE001 - the trial runs untracked
            report_internal_error(SITE, error)
            return None
        self._trials[trial.number] = trial_run
        _reporting[id(trial)] = trial_run
        trial_run.key = id(trial)
        return trial_run

    def _raised(self, trial_run: TrialRun, trial: Trial, error: BaseException) -> None:
        if isinstance(error, TrialPruned):
            return  # Optuna stores it PRUNED, with its last value: the callback ends it
        try:
            self._end(trial_run, Outcome.of(trial, state="FAIL"), error)
        except Exception as own:  # noqa: BLE001 - never mask the user's exception
            report_internal_error(SITE, own, reraise=False)

    # -- the callback ------------------------------------------------------------------

    def trial_finished(self, study: Any, frozen: FrozenTrial) -> None:
        """Optuna's callback: the trial's outcome, and the study's best."""
        try:
            trial_run = self._trials.get(frozen.number)
            if trial_run is not None:
                self._end(trial_run, Outcome.of(frozen), None)
            if self.single and frozen.state == TrialState.COMPLETE:
                self._check_best(frozen, trial_run)
        except Exception as error:  # noqa: BLE001 - never break the study
            report_internal_error(SITE, error)

    def _end(self, trial_run: TrialRun, outcome: Outcome, error: BaseException | None) -> None:
        _reporting.pop(trial_run.key, None)
        self._trials.pop(trial_run.number, None)
        trial_run.end(outcome, self.names, error)

    def _check_best(self, frozen: FrozenTrial, trial_run: TrialRun | None) -> None:
        """Log the study's best value and tag its best trial, when ``frozen`` is the
        study's best: also among the trials of other processes, which the storage is
        asked about when this one improves on the best known here (a few times per
        study). The value goes at step = the trial's number, or at the last step logged
        when an earlier trial finishes last (trials side by side): the steps never go
        back, so that the last point, MLflow's latest value, is the best.

        A storage other processes may share is asked, and the best logged, under the
        study's machine lock, held until the backends stored it: a process with an
        older best cannot store it after a newer one. The step, then, also never goes
        back from one process to the next: the last one logged is kept in the study's
        user attribute ``mlhooks.best_step``."""
        value = float(frozen.values[0])
        with self._lock:
            known = self._best
            improves = known is None or (value > known if self.maximize else value < known)
            if not improves and frozen.number != self._untagged:
                return
            if not self._shared:
                self._log_best(frozen, trial_run)
                return
            claim = studies.MachineLock(self.study.study_name)
            try:
                last = self.study.user_attrs.get(studies.BEST_STEP_ATTR)
                if isinstance(last, int):
                    self._best_step = max(self._best_step, last)
                if self._log_best(frozen, trial_run):
                    self.study.set_user_attr(studies.BEST_STEP_ATTR, self._best_step)
                    claim.release_once_stored()
            finally:
                claim.release()

    def _log_best(self, frozen: FrozenTrial, trial_run: TrialRun | None) -> bool:
        """Log ``frozen`` as the best if the storage has it so; whether it did."""
        best = self.study.best_trial
        self._best = float(best.value)
        if best.number != frozen.number:
            # trials side by side: the best may be one whose callback comes later
            self._untagged = best.number
            return False
        self._untagged = None
        self._best_step = max(self._best_step, frozen.number)
        self.session.log_metrics({"best_value": self._best}, step=self._best_step)
        tags: dict[str, Any] = {"optuna.best_trial.number": frozen.number}
        if trial_run is not None:
            tags["optuna.best_trial.run_id"] = trial_run.run.run_id
        self.session.set_tags(tags)
        return True

    # -- the end of optimize ----------------------------------------------------------

    def close(self, error: BaseException | None) -> None:
        """End the runs of trials Optuna did not report finished (a storage error after
        the objective, an interrupted callback), as the storage has them; tag the Pareto
        front of a multi-objective study."""
        left = list(self._trials.values())
        if left:
            frozen = {trial.number: trial for trial in self.study.get_trials(deepcopy=False)}
            for trial_run in left:
                stored = frozen.get(trial_run.number)
                finished = stored is not None and stored.state.is_finished()
                outcome = Outcome.of(stored) if finished else Outcome(state="RUNNING")
                self._end(trial_run, outcome, error)
        if not self.single and error is None:
            numbers = sorted(trial.number for trial in self.study.best_trials)
            self.session.set_tags({"optuna.best_trials": ",".join(map(str, numbers))})
