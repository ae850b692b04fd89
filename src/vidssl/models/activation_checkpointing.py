"""Activation checkpointing: recompute a backbone's blocks in the backward pass instead of keeping their activations.

With ``trainer.activation_checkpointing=true`` (pretraining) or ``activation_checkpointing=true``
(fine-tuning), every residual or transformer block of a backbone keeps only its input during the
forward pass; the backward pass runs the block's forward again to get what its gradient needs
(``torch.utils.checkpoint``, non-reentrant). Activation memory then grows with the number of
blocks' *inputs* rather than with every intermediate tensor, at the cost of about one more
forward of the backbone per step. Losses, gradients and BatchNorm statistics are the plain run's (bit for
bit in eager mode in ``tests/models/test_activation_checkpointing.py``; a compiled run differs from the
plain compiled one only by the compiler's own rounding). Under ``torch.no_grad`` (evaluation, EMA targets,
feature extraction) a wrapped block runs as it is.

Which modules are blocks is decided by type (:data:`BLOCK_TYPES`), never by name: the ResNet
units of every video, image and audio ResNet in vidssl, the pre-activation blocks of the
TSM-ResNets, and the Swin blocks of both Video Swins. :func:`checkpoint_blocks` changes no
module and no parameter name (state dicts, optimiser groups, EMA pairing and converters are
untouched): it gives each block an instance-level ``forward`` that calls its class's forward
through the checkpoint. ``copy.deepcopy`` of a model keeps the wrapping on the copy.

BatchNorm. Recomputing a block in train mode runs its BatchNorm layers a second time, and
``torch.utils.checkpoint`` does nothing about it: each recomputation would fold the same batch
into ``running_mean``/``running_var`` again (and count it twice in ``num_batches_tracked``), so
the statistics that evaluation uses would drift from the plain run's while losses and gradients
look identical (pytorch/pytorch#96136, open). vidssl keeps them exact: a block's forward that
runs inside a backward pass (``torch._C._current_graph_task_id() != -1``, as PyTorch's own FSDP
and module tracker detect it) is a recomputation, and it saves the running statistics of the
block's BatchNorm layers (SyncBatchNorm and :class:`vidssl.distributed.DistributedBatchNorm`
included) and puts them back after it. The normalisation itself uses the batch's statistics in
train mode, so the recomputed activations equal the first forward's. Under ``torch.compile`` the
checkpoint is traced as a whole (the compiler recomputes pure operations only, and writes the
buffers once, in the forward graph); if the compiler cannot trace a block and runs it eagerly,
the eager rule above applies again, so the statistics stay exact either way. (Why not
``checkpoint(context_fn=...)``: under ``torch.compile`` it must return dispatch modes, so it would be
left out while compiling, and a block the compiler cannot trace would then run eagerly without it.)

With SyncBatchNorm the recomputation repeats the all-reduce of the batch statistics, so a
distributed run pays one more collective per BatchNorm layer in the backward pass.

Dropout and drop path draw the same random numbers in the recomputation
(``torch.utils.checkpoint`` restores the RNG state), so they drop the same units.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models import resnet as tv_resnet
from torchvision.models import swin_transformer as tv_swin
from torchvision.models.video import resnet as tv_video_resnet

from vidssl.errors import ConfigError
from vidssl.models.backbones.resnet3d import ResUnit
from vidssl.models.backbones.swin import SwinBlock3D
from vidssl.models.backbones.tsm import _PreActBlock

__all__ = ["BLOCK_TYPES", "checkpoint_blocks", "enable_activation_checkpointing", "is_checkpointed"]

#: The module types recomputed as one unit (subclasses included).
BLOCK_TYPES: tuple[type[nn.Module], ...] = (
    ResUnit,                        # FGKVMemPred's R3D-18 / R(2+1)D / Slow-R18 (resnet3d)
    tv_video_resnet.BasicBlock,     # torchvision-style R3D-18 / R(2+1)D-18 (GDT, STiCA)
    tv_video_resnet.Bottleneck,
    tv_resnet.BasicBlock,           # 2-D ResNets: GDT's audio ResNet-9/18
    tv_resnet.Bottleneck,           # BaSSL's shot encoder (ResNet-50)
    _PreActBlock,                   # TSM-ResNet (BraVe's video) and BraVe's audio ResNetV2
    SwinBlock3D,                    # SwinBEVT (BEVT)
    tv_swin.SwinTransformerBlock,   # VideoSwin (torchvision's SwinTransformer3d)
)

_MARK = "_vidssl_recomputed"


def is_checkpointed(module: nn.Module) -> bool:
    """Whether ``module`` is a block that :func:`checkpoint_blocks` wrapped."""
    return bool(module.__dict__.get(_MARK, False))


def _in_backward() -> bool:
    """True while the autograd engine runs a backward pass on this thread (the checkpoint's recomputation)."""
    return torch._C._current_graph_task_id() != -1


@contextlib.contextmanager
def _running_statistics_kept(block: nn.Module) -> Iterator[None]:
    """Put the running statistics of ``block``'s BatchNorm layers back as they were on exit."""
    saved = []
    for module in block.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and module.track_running_stats:
            saved += [(buffer, buffer.detach().clone()) for buffer in
                      (module.running_mean, module.running_var, module.num_batches_tracked) if buffer is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _block_forward(block: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The block's own forward; run as a recomputation (inside backward) it leaves the BN statistics alone."""
    forward = type(block).forward
    if torch.compiler.is_compiling() or not _in_backward():
        return forward(block, *args, **kwargs)
    with _running_statistics_kept(block):
        return forward(block, *args, **kwargs)


def _recomputed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Instance-level ``forward`` of a wrapped block: checkpointed when gradients are being recorded."""
    if not torch.is_grad_enabled():  # evaluation, EMA targets, feature extraction: nothing to keep
        return type(self).forward(self, *args, **kwargs)
    return checkpoint(_block_forward, self, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(module: nn.Module, trainable_only: bool = True) -> int:
    """Make every block of ``module`` (a module of :data:`BLOCK_TYPES`) recompute its activations in backward.

    ``trainable_only``: skip blocks without a parameter that requires grad (EMA targets, frozen
    tokenizers: they keep no activations anyway). In place; wrapping twice changes nothing.
    Returns the number of wrapped blocks in ``module`` (including ones wrapped before).
    """
    count = 0
    for block in module.modules():
        if not isinstance(block, BLOCK_TYPES):
            continue
        if trainable_only and not any(p.requires_grad for p in block.parameters()):
            continue
        if not is_checkpointed(block):
            # a bound method in the instance dict: deepcopy rebinds it to the copy (copy._deepcopy_method)
            block.forward = _recomputed_forward.__get__(block, type(block))
            setattr(block, _MARK, True)
        count += 1
    return count


def enable_activation_checkpointing(backbone: nn.Module, name: str, option: str) -> int:
    """:func:`checkpoint_blocks` on ``backbone``, which must have at least one block to recompute.

    ``name`` names the backbone and ``option`` the config key in the error: a backbone with no
    block of :data:`BLOCK_TYPES` is a ConfigError rather than a run that silently saves nothing.
    """
    count = checkpoint_blocks(backbone)
    if count == 0:
        known = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in BLOCK_TYPES)
        raise ConfigError(
            f"{option}=true: backbone {name} ({type(backbone).__name__}) has no trainable block that vidssl can "
            f"recompute (known block types: {known}); set {option}=false")
    return count
