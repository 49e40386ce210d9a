"""mlhooks-sklearn: every scikit-learn fit, search and cross-validation tracked by
``mlhooks.autolog()``. The entry point is :mod:`mlhooks_sklearn.plugin`."""

from __future__ import annotations

from .plots import wait as wait_for_plots

__all__ = ["wait_for_plots"]
