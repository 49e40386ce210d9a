"""Confusion matrix, ROC and precision-recall images of a classifier's training
predictions (``autolog(sklearn={"log_plots": True})``), drawn in the background.

The training thread only copies ``y`` (the predictions are already the plugin's own
arrays) and hands the drawing to the core's background worker
(:meth:`mlhooks.plugin.FitSession.in_background`), which draws with matplotlib's object API
(no pyplot state) once no fit is running, and logs the images to the fit's run.
``mlhooks.flush()`` and interpreter exit wait for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import mlhooks
from mlhooks.plugin import FitSession, suppressed


def submit(session: FitSession, y: Any, predicted: Any, proba: Any, classes: Any) -> None:
    """Draw the plots of one fit in the background (``y`` is copied: the caller may
    change it later)."""
    if y is None or predicted is None:
        return
    y = np.array(y, copy=True)

    def draw(folder: Path) -> None:
        with suppressed():  # our own metric calls are not post-training metrics
            _draw_all(folder, y, predicted, proba, classes)

    session.in_background(draw)


def wait(timeout: float | None = None) -> bool:
    """Wait until every plot drawn so far is stored: ``mlhooks.flush(timeout)``."""
    return mlhooks.flush(timeout)


def _draw_all(folder: Path, y: Any, predicted: Any, proba: Any, classes: Any) -> None:
    from matplotlib.figure import Figure

    labels = (
        np.asarray(classes) if classes is not None else np.unique(np.concatenate([y, predicted]))
    )
    figures = {"training_confusion_matrix.png": _confusion(Figure(), y, predicted, labels)}
    if proba is not None and classes is not None and np.ndim(proba) == 2:
        figures["training_roc_curve.png"] = _curves(Figure(), y, proba, labels, "roc")
        figures["training_precision_recall_curve.png"] = _curves(Figure(), y, proba, labels, "pr")
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=80)


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
