"""Data-wait fraction and samples/s of every training step, so a run shows when it is I/O-bound.

:class:`ThroughputLogger` (a Lightning ``Callback``, added to every ``vidssl pretrain``) times each
optimiser step on the host clock and splits it in two:

* **data wait**: from the end of one training batch to the start of the next — the loop is blocked
  on the DataLoader (``next(iterator)``), then moves the batch to the device. With enough workers
  this is near zero; when it is a large part of the step, the loader sets the speed.
* **compute**: from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward,
  optimiser step).

Logged every step through the run's loggers (``metrics.csv`` and TensorBoard; Lightning writes
every ``trainer.log_every`` steps, and each written value covers all steps since the previous
write, so nothing between two writes is lost):

* ``throughput/data_wait_fraction``: wait / (wait + compute) over the window;
* ``throughput/samples_per_s``: samples of the primary stream (clips after repeated augmentation
  is flattened, on this process) per second of wall time over the window;
* ``throughput/data_wait_ms`` and ``throughput/step_ms``: mean per step over the window.

On a GPU the step runs asynchronously: the host may return from a step whose kernels are still
queued and then wait for data while the GPU finishes them. The data-wait time is then the time
the *training loop* waited, an upper bound on the time the GPU sat idle (no host-device
synchronisation is added to measure it more finely: that would slow every step).

The first step of a fit also counts the workers' start-up; :meth:`ThroughputLogger.summary` (printed
at the end of ``vidssl pretrain``) leaves it out.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import lightning as L
import torch

__all__ = ["ThroughputLogger", "samples_in_batch"]


def samples_in_batch(batch: Any) -> int:
    """Samples in a training batch ``{stream: stream batch}``: those of the primary (first) stream.

    A stream batch holds ``index`` (``B``) per sample after collation; repeated samples of one
    decode count separately (they are separate samples for the model).
    """
    if isinstance(batch, dict) and batch:
        first = next(iter(batch.values()))
        if isinstance(first, dict):
            index = first.get("index")
            if isinstance(index, torch.Tensor) and index.ndim >= 1:
                return int(index.shape[0])
            for value in first.get("clips", {}).values():
                if isinstance(value, torch.Tensor) and value.ndim >= 1:
                    return int(value.shape[0])
    if isinstance(batch, torch.Tensor) and batch.ndim >= 1:
        return int(batch.shape[0])
    raise ValueError("cannot count the samples of this batch: expected {stream: {'index': B tensor, 'clips': ...}}")


class ThroughputLogger(L.Callback):
    """Logs ``throughput/*`` every step (see the module docstring).

    Args:
        window: steps averaged per logged value; None uses the trainer's ``log_every_n_steps``, so each
            value written covers every step since the previous one.
        clock: the timer (``time.perf_counter``; tests pass a fake one).
    """

    def __init__(self, window: int | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 step, got {window}")
        self.window = window
        self.clock = clock
        self._batch_end: float | None = None  # host time the previous batch ended (or the epoch started)
        self._batch_start: float | None = None
        self._recent: list[tuple[float, float, int, int]] = []  # (wait s, compute s, samples, 1) per step
        self._totals = [0.0, 0.0, 0, 0]  # after the first step: wait s, compute s, samples, steps
        self._steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._batch_end = self.clock()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self.clock()
        if self._batch_start is None or self._batch_end is None:
            return
        wait = max(0.0, self._batch_start - self._batch_end)
        compute = max(0.0, now - self._batch_start)
        samples = samples_in_batch(batch)
        self._batch_end = now
        self._steps += 1
        if self._steps > 1:  # the first step includes the workers' start-up
            self._totals[0] += wait
            self._totals[1] += compute
            self._totals[2] += samples
            self._totals[3] += 1
        window = self.window or max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        self._recent = (self._recent + [(wait, compute, samples, 1)])[-window:]
        for name, value in self.window_metrics().items():
            pl_module.log(f"throughput/{name}", value, on_step=True, on_epoch=False, batch_size=1)

    def window_metrics(self) -> dict[str, float]:
        """Metrics over the last ``window`` steps (what is logged at this step)."""
        return _metrics(*(sum(col) for col in zip(*self._recent))) if self._recent else {}

    def summary(self) -> dict[str, float]:
        """Metrics over every step after the first of this process's fit (empty with fewer than 2 steps)."""
        return _metrics(*self._totals) if self._totals[3] else {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._batch_end = self._batch_start = None


def _metrics(wait: float, compute: float, samples: int, steps: int) -> dict[str, float]:
    """Fractions and rates of ``steps`` steps that waited ``wait`` s and computed ``compute`` s."""
    total = wait + compute
    return {
        "data_wait_fraction": wait / total if total > 0 else 0.0,
        "samples_per_s": samples / total if total > 0 else 0.0,
        "data_wait_ms": 1000.0 * wait / steps,
        "step_ms": 1000.0 * total / steps,
    }
