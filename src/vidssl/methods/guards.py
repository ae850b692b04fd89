"""Guards against a diverged run: a non-finite loss stops training (or skips the step when allowed),
and non-finite weights are never written to a checkpoint or an encoder file, nor evaluated.

Why: with ``optim.lr=1e6`` the loss turns NaN at step 2; without a guard the run went on, exited 0
and wrote a NaN ``encoder.safetensors`` and ``best.ckpt``, whose evaluation then reported chance as
a normal result (issue 16, case 2).

- :func:`check_loss` runs inside ``SSLMethod.training_step``. A finite loss passes. A non-finite one
  raises :class:`~vidssl.errors.TrainingDiverged` (a ``UserError``: one line, exit 2) naming the step,
  the loss terms that were not finite and what to change — unless ``trainer.max_nonfinite_steps`` is
  N > 0, in which case up to N such steps in a run are skipped (no backward, no optimiser step, no
  EMA update; the step still counts, so the data position stays exact) and logged as
  ``train/nonfinite_steps``. On CPU the check is immediate. On a GPU with skipping off (the
  default) it is *deferred*, so that no step waits for the GPU (issue 15: no host syncs in the
  step): the first non-finite step is recorded on the device and read back by
  :func:`raise_if_diverged` every ``trainer.log_every`` steps, before every checkpoint and at the end
  of training; the error names the step where the loss first went non-finite. Skipping needs the
  answer before the optimiser step, so with ``max_nonfinite_steps`` > 0 the check costs one
  device-to-host copy of a scalar per step. The forward pass of a skipped step has already updated
  BatchNorm's running statistics, so
  :class:`BufferSnapshot` copies every buffer before each step (only when skipping is allowed) and
  a skipped step puts them back.
- :func:`vidssl.models.first_nonfinite` finds a non-finite tensor in a state dict; the checkpoint writer and
  :func:`vidssl.models.save_encoder` refuse such state, so the last good checkpoint is kept.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import Tensor

from vidssl.errors import TrainingDiverged
from vidssl.models import first_nonfinite  # noqa: F401 (re-exported: the checkpoint writer uses it)

log = logging.getLogger(__name__)

__all__ = ["check_loss", "raise_if_diverged", "require", "first_nonfinite", "divergence_advice", "BufferSnapshot"]


def require(condition: Tensor, message: str) -> None:
    """Fail when the 0-dim bool ``condition`` is false: a :class:`ValueError` at once on CPU; on a GPU a
    device-side assert (``torch._assert_async``), so that checking does not make the host wait for the
    GPU inside a training step (the failure then surfaces as a CUDA error carrying ``message``)."""
    if condition.device.type == "cpu":
        if not bool(condition):
            raise ValueError(message)
    else:
        torch._assert_async(condition, message)


def _reduce_over_ranks(flag: Tensor, op) -> Tensor:
    """``flag`` all-reduced with ``op`` when several processes train, else as it is."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(flag, op=op)
    return flag


def divergence_advice(cfg: Any) -> str:
    """What to change after a divergence, with the run's current values."""
    optim = cfg.optim
    clip = f"set optim.grad_clip (now {optim.grad_clip})" if not optim.grad_clip else f"lower optim.grad_clip (now {optim.grad_clip})"
    return (f"lower optim.lr (now {optim.lr:g}), {clip}, or allow a few bad steps with "
            f"trainer.max_nonfinite_steps=N (now {cfg.trainer.max_nonfinite_steps})")


def _all_ranks_finite(finite: Tensor) -> bool:
    """Whether every process's loss is finite (one process skipping a step alone would hang DDP)."""
    flag = _reduce_over_ranks(finite.detach().to(torch.float32).reshape(1), torch.distributed.ReduceOp.MIN)
    return bool(flag.item() > 0)


def check_loss(method: Any, loss: Tensor, terms: Mapping[str, Any]) -> bool:
    """True when ``loss`` is finite on every process. Otherwise raise :class:`TrainingDiverged`, or —
    while fewer than ``trainer.max_nonfinite_steps`` steps were skipped — return False: the caller
    skips the step. Deferred on a GPU when skipping is off (see the module docstring)."""
    if _defers(method, loss):
        finite = torch.isfinite(loss.detach()).all()
        first = getattr(method, "_first_nonfinite_step", None)
        if first is None or first.device != loss.device:
            first = torch.full((), -1, dtype=torch.long, device=loss.device)
        # recorded on the device (masked_fill with a Python number: no host copy, no sync)
        method._first_nonfinite_step = first.masked_fill((first < 0) & ~finite, int(method.global_step))
        method._skip_step = False
        return True
    if _all_ranks_finite(torch.isfinite(loss.detach()).all()):
        method._skip_step = False
        return True
    step = int(method.global_step)
    bad = [k for k, v in terms.items() if isinstance(v, Tensor) and v.dim() == 0 and v.is_floating_point()
           and not bool(torch.isfinite(v))]
    what = f"loss is {float(loss.detach().float())}" + (f" (non-finite: {', '.join(bad)})" if bad else "")
    skipped = getattr(method, "_nonfinite_steps", 0) + 1
    allowed = int(method.cfg.trainer.max_nonfinite_steps)
    if skipped > allowed:
        raise TrainingDiverged(f"training diverged at step {step}: {what}"
                               + (f", after {allowed} skipped non-finite steps" if allowed else "")
                               + f"; {divergence_advice(method.cfg)}")
    method._nonfinite_steps = skipped
    method._skip_step = True
    snapshot = getattr(method, "_buffer_snapshot", None)
    if snapshot:  # undo the running-statistics update of the bad forward pass
        torch._foreach_copy_(list(method.buffers()), snapshot)
    log.warning("step %d skipped: %s (%d of at most %d such steps)", step, what, skipped, allowed)
    method.log("train/nonfinite_steps", float(skipped), on_step=True)
    return False


def _defers(method: Any, loss: Tensor) -> bool:
    """Whether the finiteness check is read back later instead of now (GPU, skipping off)."""
    return loss.device.type == "cuda" and int(method.cfg.trainer.max_nonfinite_steps) == 0


def raise_if_diverged(method: Any) -> None:
    """Read back a deferred check (:func:`check_loss`): raise :class:`TrainingDiverged` naming the
    first step whose loss was not finite on any process. One host sync; a no-op when nothing was deferred."""
    first = getattr(method, "_first_nonfinite_step", None)
    if first is None:
        return
    step = int(_reduce_over_ranks(first.detach().clone().reshape(1), torch.distributed.ReduceOp.MAX).item())
    if step >= 0:
        raise TrainingDiverged(f"training diverged at step {step}: the loss was not finite (found at step "
                               f"{int(method.global_step)}: on a GPU the check is read back every trainer.log_every "
                               f"steps); {divergence_advice(method.cfg)}")


def _callback_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class BufferSnapshot(_callback_base()):
    """Copies the module's buffers (BatchNorm statistics and counters) before every step when
    ``trainer.max_nonfinite_steps > 0``, so :func:`check_loss` can restore them for a skipped step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if int(pl_module.cfg.trainer.max_nonfinite_steps) <= 0:
            return
        buffers = list(pl_module.buffers())
        if not buffers:
            return
        snapshot = getattr(pl_module, "_buffer_snapshot", None)
        if not snapshot or len(snapshot) != len(buffers) or snapshot[0].device != buffers[0].device:
            pl_module._buffer_snapshot = [b.detach().clone() for b in buffers]
        else:
            torch._foreach_copy_(snapshot, buffers)
