"""Distributed helpers every method shares: all-gather with gradients, synchronised batch norm on
any device (CPU/gloo included), and gathering plain Python objects from every process.

All of them are no-ops in a single process, so the same code runs from one CPU to many GPUs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["dist_ready", "world_size", "gather_with_grad", "gather_objects", "DistributedBatchNorm",
           "convert_sync_batchnorm", "check_elastic_restarts", "release_process_group"]


def check_elastic_restarts(environ: dict[str, str] | None = None) -> None:
    """Refuse to start under ``torchrun --max-restarts N`` (N > 0) with torch's shared rendezvous store.

    torchrun's c10d rendezvous creates its TCP store once and hands the same store to every restart
    round (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE`` unset), and the workers' process group reads it
    without a per-attempt prefix: after a restart a rank can read the previous round's gloo/NCCL
    addresses and hang or fail with "Connection refused" while forming the group (4 of 11
    restarts of the scenario in ``tests/reliability/test_distributed_restart.py``; none of 6 with the
    variable set).
    Setting ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in torchrun's environment makes every round build
    a fresh store. Checked from the environment torchrun gives its workers; a no-op outside torchrun.
    """
    import os

    from vidssl.errors import ConfigError

    env = os.environ if environ is None else environ
    restarts = int(env.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if restarts > 0 and env.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "0") != "1":
        raise ConfigError(
            f"torchrun --max-restarts {restarts} needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: with torch's shared "
            "rendezvous store a restarted group can read the previous attempt's addresses and hang while it forms. "
            "Run: TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --max-restarts ... -m vidssl.cli pretrain ...")


def release_process_group() -> None:
    """Destroy the default process group, if any, before the process exits. Left to interpreter exit,
    gloo's threads can be torn down in an order that aborts the process ("terminate called without an
    active exception", SIGABRT) after training succeeded, and torchrun then reports the run as failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """Processes in the default group (1 when not distributed)."""
    return torch.distributed.get_world_size() if dist_ready() else 1


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed.
    Every process must call it (a collective)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` (``B×…``) from every process along dim 0, keeping gradients.

    Unlike ``torch.distributed.all_gather``, the result stays in the autograd graph: the
    backward pass sends each process the gradient of its own slice, summed over every
    process's loss (``torch.distributed.nn.functional.all_gather``). Returns ``x`` itself
    when not distributed. Every process must pass the same shape.
    """
    if not dist_ready() or torch.distributed.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose batch statistics are all-reduced over processes, on any device (gloo too).

    ``torch.nn.SyncBatchNorm`` only runs on GPUs; this one computes the global mean and
    variance from all-reduced sums (with autograd through the reduction), so the CPU DDP
    tests and CPU runs see exactly the statistics of the whole batch. Eval mode and
    single-process runs fall back to plain ``F.batch_norm``.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist_ready() and torch.distributed.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count.view(1)])
        stats = all_reduce(stats)
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c : 2 * c] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased.detach(), alpha=self.momentum)
                self.num_batches_tracked.add_(1)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm by a synchronised one: torch's ``SyncBatchNorm`` on CUDA,
    :class:`DistributedBatchNorm` elsewhere. Parameters and buffers are kept."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistributedBatchNorm):
        out = DistributedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device_type))
    return out
