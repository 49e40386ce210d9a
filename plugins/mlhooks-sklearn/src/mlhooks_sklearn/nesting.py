"""Fits that are part of a bigger one but escape the core's per-thread guard.

* Helper threads: a tracked fit may fit sub-estimators on joblib's thread pool
  (``IsolationForest(n_jobs=2)`` fits its trees there). While a tracked sklearn call
  runs in this process, fits on pool worker threads belong to it.
* Cross-validation folds: ``cross_validate`` imported before ``autolog()`` is the
  unpatched function; its folds' fits (through ``_fit_and_score``) would each become a
  run. They are not tracked, with one notice saying why.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType

from mlhooks.plugin import warn_once

_active = 0
_lock = threading.Lock()
_FOLD_FUNCTION = "_fit_and_score"
_FOLD_MODULE = "sklearn.model_selection._validation"


def enter() -> None:
    global _active
    with _lock:
        _active += 1


def leave() -> None:
    global _active
    with _lock:
        _active = max(_active - 1, 0)


def part_of_another_fit() -> bool:
    """Whether the fit starting on this thread belongs to a bigger one."""
    return _on_a_helper_thread() or _in_a_cross_validation_fold()


def _on_a_helper_thread() -> bool:
    if not _active:
        return False
    pool = sys.modules.get("multiprocessing.dummy")
    return pool is not None and isinstance(threading.current_thread(), pool.DummyProcess)


def _in_a_cross_validation_fold(depth: int = 8) -> bool:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == _FOLD_FUNCTION and frame.f_globals.get("__name__") == _FOLD_MODULE:
            warn_once(
                "sklearn-folds",
                "mlhooks: the fits of a scikit-learn cross-validation are not tracked one "
                "by one; cross_validate and cross_val_score are tracked as one run when "
                "called through the names autolog() patched (import them after autolog(), "
                "or call sklearn.model_selection.cross_validate)",
            )
            return True
        frame = frame.f_back
    return False
