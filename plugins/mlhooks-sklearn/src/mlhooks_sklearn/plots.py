"""Confusion matrix, ROC and precision-recall images of a classifier's training
predictions (``autolog(sklearn={"log_plots": True})``), drawn on a background thread.

The training thread only copies ``y`` (the predictions are already the plugin's own
arrays) and queues the job; a worker thread draws with matplotlib's object API (no
pyplot state) and reports the images to the fit's run. :func:`wait` waits for the
queued plots; they are also waited for at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import tempfile
import threading
from typing import Any

import numpy as np

from mlhooks import FitSession
from mlhooks.errors import report_background_error
from mlhooks.patching import suppressed

_jobs: queue.Queue[tuple[FitSession, Any, Any, Any, Any]] = queue.Queue()
_worker: threading.Thread | None = None
_lock = threading.Lock()


def submit(session: FitSession, y: Any, predicted: Any, proba: Any, classes: Any) -> None:
    """Queue the plots of one fit (``y`` is copied: the caller may change it later)."""
    if y is None or predicted is None:
        return
    _jobs.put((session, np.array(y, copy=True), predicted, proba, classes))
    _ensure_worker()


def wait(timeout: float | None = None) -> bool:
    """Wait until every queued plot was drawn and reported; False on timeout."""
    done = threading.Event()

    def waiter() -> None:
        _jobs.join()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    return done.wait(timeout)


def _ensure_worker() -> None:
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="mlhooks-sklearn-plots", daemon=True)
            _worker.start()


def _work() -> None:
    while True:
        session, y, predicted, proba, classes = _jobs.get()
        try:
            with suppressed():  # our own metric calls are not post-training metrics
                _draw_all(session, y, predicted, proba, classes)
        except Exception as error:  # noqa: BLE001 - a plot never breaks anything
            report_background_error("sklearn plots", error)
        finally:
            _jobs.task_done()


def _draw_all(session: FitSession, y: Any, predicted: Any, proba: Any, classes: Any) -> None:
    from matplotlib.figure import Figure

    folder = tempfile.mkdtemp(prefix="mlhooks-sklearn-plots-")
    try:
        labels = (
            np.asarray(classes)
            if classes is not None
            else np.unique(np.concatenate([y, predicted]))
        )
        figures = {"training_confusion_matrix.png": _confusion(Figure(), y, predicted, labels)}
        if proba is not None and classes is not None and np.ndim(proba) == 2:
            figures["training_roc_curve.png"] = _curves(Figure(), y, proba, labels, "roc")
            figures["training_precision_recall_curve.png"] = _curves(
                Figure(), y, proba, labels, "pr"
            )
        for name, figure in figures.items():
            path = os.path.join(folder, name)
            figure.savefig(path, dpi=80)
            session.log_artifact(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _confusion(figure: Any, y: Any, predicted: Any, labels: Any) -> Any:
    index = {label: i for i, label in enumerate(labels.tolist())}
    n = len(labels)
    matrix = np.zeros((n, n), dtype=int)
    for true, pred in zip(y.tolist(), np.asarray(predicted).tolist(), strict=False):
        if true in index and pred in index:
            matrix[index[true], index[pred]] += 1
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center")
    ticks = [str(label) for label in labels.tolist()]
    axes.set_xticks(range(n), ticks)
    axes.set_yticks(range(n), ticks)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (training data)")
    return figure


def _curves(figure: Any, y: Any, proba: Any, labels: Any, kind: str) -> Any:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    axes = figure.subplots()
    shown = [1] if len(labels) == 2 else range(len(labels))
    for k in shown:
        positive = y == labels[k]
        if positive.all() or not positive.any():
            continue
        if kind == "roc":
            x, v, _ = roc_curve(positive, proba[:, k])
            axes.plot(x, v, label=f"{labels[k]} (AUC {auc(x, v):.3f})")
        else:
            v, x, _ = precision_recall_curve(positive, proba[:, k])
            axes.plot(x, v, label=str(labels[k]))
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.set_title("ROC curve (training data)")
    else:
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title("Precision-recall curve (training data)")
    axes.legend(loc="best")
    return figure


atexit.register(wait, 30)
