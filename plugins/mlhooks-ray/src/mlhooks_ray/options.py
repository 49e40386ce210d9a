"""What ``autolog(ray={...})`` takes besides the common options."""

from __future__ import annotations

from dataclasses import dataclass

from mlhooks.plugin import FrameworkOptions


@dataclass(frozen=True)
class RayOptions(FrameworkOptions):
    """The Ray Tune integration's options (see the plugin's README)."""

    track_trials: bool = True
    """A child run per trial, opened in the trial's worker process, where the trial's
    fits are autologged too (the trainable is wrapped to do it). False: the sweep's run
    alone, and the trainable runs as given."""
