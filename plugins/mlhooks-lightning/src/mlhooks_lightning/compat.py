"""The few places where mlhooks reads Lightning's internals, kept in one module.

Lightning computes what its loggers receive in a ``_ResultCollection`` (per loop):
for each value a module logged with ``self.log``, its step-level value (named
``<key>_step`` when it is logged ``on_step`` and ``on_epoch``) and its epoch-level
value (``<key>_epoch``). Reading that collection is what lets the callback log the very
keys and granularities a Lightning logger would, with ``logger=False`` or any logger.
Supported: Lightning 2.x, as ``lightning.pytorch`` and as ``pytorch_lightning``.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

UNUSED_BATCH_HOOKS = (
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_test_batch_start",
    "on_predict_batch_start",
    "on_predict_batch_end",
)
"""Per-batch callback hooks MlhooksCallback does not implement."""


def to_float(value: Any) -> float | None:
    """``value`` (a tensor or a number) as a float; None when it is neither."""
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def floats(values: Any) -> dict[str, float]:
    """The entries of ``values`` (tensors or numbers) that convert to a float."""
    out = {}
    for key, value in values.items():
        number = to_float(value)
        if number is not None:
            out[key] = number
    return out


def _values(results: Any, on_step: bool) -> dict[str, float]:
    """The logger-bound values of ``results`` for every dataloader, as floats."""
    if results is None:
        return {}
    indexes = {item.meta.dataloader_idx for item in results.values()}
    current = results.dataloader_idx
    out: dict[str, Any] = {}
    try:
        for index in indexes:
            results.dataloader_idx = index
            out.update(results.metrics(on_step)["log"])
    finally:
        results.dataloader_idx = current
    return floats(out)


def train_step_values(trainer: Any) -> dict[str, float]:
    """Step-level values of the latest training batch (called every logged step: the
    training loop has one dataloader, so no index to switch)."""
    results = trainer.fit_loop.epoch_loop._results
    return {} if results is None else floats(results.metrics(True)["log"])


def train_epoch_values(trainer: Any) -> dict[str, float]:
    """Epoch-level training values (all ranks must call this together: a value logged
    with ``sync_dist=True`` is reduced across processes when first computed)."""
    return _values(trainer.fit_loop.epoch_loop._results, on_step=False)


def eval_values(trainer: Any, on_step: bool) -> dict[str, float]:
    """Values of the running evaluation loop (validation or test)."""
    return _values(trainer._results, on_step=on_step)


def at_epoch_end(trainer: Any) -> bool:
    """Whether Lightning is between batches (logging epoch-level values) right now."""
    return trainer._logger_connector._first_loop_iter is None


def last_batch_of_epoch(trainer: Any) -> bool:
    """Whether the training epoch loop has just run its last batch."""
    loop = trainer.fit_loop.epoch_loop
    return bool(loop.batch_progress.is_last_batch) or bool(loop.done)


def skippable_hooks(package: str) -> tuple[str, ...]:
    """The :data:`UNUSED_BATCH_HOOKS`, when the Lightning ``package`` skips a callback's
    hook that is not callable, as 2.x does; else none. An instance of MlhooksCallback
    sets those of them it inherits as no-ops to None: Lightning then spends nothing on
    them, where a no-op costs a profiler context (about 2 microseconds per hook per
    batch). Subclasses that implement one keep it, and ``super()`` still finds the
    no-op, since only the instance attribute is None."""

    class Probe:
        state_key = "mlhooks-probe"
        on_before_backward = None

    try:
        call = importlib.import_module(f"{package}.trainer.call")
        profilers = importlib.import_module(f"{package}.profilers")
        trainer = SimpleNamespace(
            lightning_module=None, callbacks=[Probe()], profiler=profilers.PassThroughProfiler()
        )
        call._call_callback_hooks(trainer, "on_before_backward")
    except Exception:  # noqa: BLE001 - this Lightning calls hooks differently: keep them
        return ()
    return UNUSED_BATCH_HOOKS
