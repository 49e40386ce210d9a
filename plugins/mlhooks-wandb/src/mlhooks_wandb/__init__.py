"""Weights & Biases backend for mlhooks: each run a W&B run, online or offline."""

from .backend import WandbBackend
from .mapping import STEP_METRIC, TAGS_KEY

__all__ = ["STEP_METRIC", "TAGS_KEY", "WandbBackend"]
