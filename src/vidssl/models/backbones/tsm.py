"""Pre-activation TSM-ResNet (BraVe's ``TSMResNetV2``) with a width multiplier.

A 2-D pre-activation ResNet applied to every frame, with a temporal shift of 1/8 of the channels
forward and 1/8 backward in the residual branch of every block (Lin et al., TSM). Input
``B×C×T×H×W``; frames are folded into the batch (BraVe's "gpu" mode), so the network works for
any number of frames (16 in training, 32 in evaluation).

Structure (``brave/models/brave/tsm_resnet.py``):

- stem: Conv 7×7 stride 2, 64·w channels, no bias, **no BN/ReLU** (pre-activation), then
  max-pool 3×3 stride 2;
- 4 units of bottleneck blocks (3, 4, 6, 3) for depth 50, outputs (256, 512, 1024, 2048)·w,
  strides (1, 2, 2, 2). A block computes ``preact = ReLU(BN(x))``; the shortcut is a strided 1×1
  conv of ``preact`` in the first block of a unit, ``x`` otherwise; the residual branch is
  ``temporal_shift(preact)`` → conv_0 1×1 → BN, ReLU → conv_1 3×3 (stride, v1.5 style) → BN, ReLU →
  conv_2 1×1; output = shortcut + residual (no final ReLU);
- head: BN, ReLU (the ``last_conv`` feature map), mean over H, W per frame, then mean over T →
  ``B×2048·w``.

Depth 18/34 (not in BraVe) use pre-activation basic blocks (3×3, 3×3) with the same shift and a
projection only where the shape changes.

Registry names and parameter counts (measured; pinned in ``tests/models/test_backbones.py``):
``tsm_resnet50`` 23.50 M (2048-d), ``tsm_resnet50_x2`` 93.89 M (4096-d), ``tsm_resnet18`` 11.17 M
(512-d), ``tsm_resnet_tiny`` (depth-50 layout, width ×1/8, one block per unit) 0.13 M (256-d).
Every builder accepts ``in_channels=2`` for an optical-flow encoder.

The shift (:func:`temporal_shift`) reproduces BraVe's ``temporal_shift_gpu`` exactly, including
its channel **re-ordering**: with ``n = C // 8`` the output is
``[x[t+1][:, C-n:], x[t][:, n:C-n], x[t-1][:, :n]]``, i.e. output channels ``0..n-1`` come from the
*next* frame's last ``n`` channels, the last ``n`` output channels from the *previous* frame's
first ``n`` channels, the middle is untouched, and missing frames at either end are zeros.
Keeping this layout means released weights need no channel permutation.

Padding: Haiku's 'SAME' padding of stride-2 convs and pools is asymmetric (the extra pixel goes
bottom/right). By default we pad symmetrically (``k//2``, the PyTorch habit: same shapes, a
one-pixel offset); ``tf_same_padding=True`` reproduces Haiku exactly, which is what a model
loaded from BraVe's checkpoints needs to give BraVe's outputs.

Initialisation follows Haiku's ``Conv2D`` default: ``TruncatedNormal(stddev=1/sqrt(fan_in))``, a
normal of that stddev cut at ±2 stddev (whose own standard deviation is 0.88/sqrt(fan_in): Haiku's
default does not rescale for the truncation, unlike ``VarianceScaling``), BN scale 1 / offset 0.

Converting BraVe's released ``.npy`` checkpoints
-----------------------------------------------
``np.load(path, allow_pickle=True).item()`` holds ``params`` and ``state``, dicts keyed by Haiku
module paths. The module names here are Haiku's, so a name maps by string substitution:

1. keep keys under ``narrow_video_embedding/~/TSMResNetV2/~/`` (or ``broad_video_embedding/…``),
   strip that prefix and replace every ``/~/`` by ``.``;
   e.g. ``…/TSMResNetV2/~/tsm_resnet_unit_0/~/block_0/~/conv_0`` → ``tsm_resnet_unit_0.block_0.conv_0``;
2. conv ``w`` (``[kh, kw, in, out]``) → ``.weight`` via ``permute(3, 2, 0, 1)``;
3. BN ``scale`` / ``offset`` → ``.weight`` / ``.bias`` (flatten to ``[C]``); BN state
   ``<bn>/~/mean_ema`` / ``<bn>/~/var_ema`` → ``average`` gives ``.running_mean`` / ``.running_var``.

Names: ``tsm_resnet_stem`` (stem conv), ``tsm_resnet_unit_{u}.block_{b}.{batch_norm, shortcut_conv,
conv_0, batch_norm_1, conv_1, batch_norm_2, conv_2}`` (``batch_norm`` is the pre-activation BN,
``batch_norm_1``/``_2`` precede ``conv_1``/``conv_2``) and the final ``batch_norm``. Build with
``tf_same_padding=True`` and the same ``width_mult`` (1 or 2) as the checkpoint.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def temporal_shift(x: Tensor, num_frames: int, fold_div: int = 8) -> Tensor:
    """BraVe's temporal shift of ``x`` = ``(B·T)×C×H×W`` (frames of a clip consecutive).

    With ``n = C // fold_div``: output channels ``[0, n)`` at frame ``t`` are input channels
    ``[C-n, C)`` of frame ``t+1``; output channels ``[C-n, C)`` are input channels ``[0, n)`` of
    frame ``t-1``; channels ``[n, C-n)`` are unchanged; frames outside the clip are zeros.
    """
    bt, c, h, w = x.shape
    if num_frames <= 0 or bt % num_frames:
        raise ValueError(f"temporal_shift: batch×frames {bt} is not a multiple of num_frames={num_frames}")
    n = c // fold_div
    if n == 0:
        return x
    clips = x.reshape(bt // num_frames, num_frames, c, h, w)
    # F.pad pads the last dims first: (W, W, H, H, C, C, T_before, T_after).
    from_next = F.pad(clips[:, 1:, c - n :], (0, 0, 0, 0, 0, 0, 0, 1))
    from_previous = F.pad(clips[:, :-1, :n], (0, 0, 0, 0, 0, 0, 1, 0))
    shifted = torch.cat([from_next, clips[:, :, n : c - n], from_previous], dim=2)
    return shifted.reshape(bt, c, h, w)


def _tf_same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[int]:
    """``F.pad`` amounts (W before/after, H before/after) of TensorFlow/Haiku 'SAME' padding."""
    pads: list[int] = []
    for length, k, s in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with 'SAME' padding: symmetric ``k//2``, or Haiku's exact asymmetric padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, tf_same_padding: bool = False):
        super().__init__(cin, cout, kernel, stride=stride, padding=0 if tf_same_padding else kernel // 2, bias=False)
        self.tf_same_padding = tf_same_padding

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_same_padding:
            x = F.pad(x, _tf_same_pads(x.shape[-2:], self.kernel_size, self.stride))
        return super().forward(x)


def max_pool_same(x: Tensor, tf_same_padding: bool = False) -> Tensor:
    """Max-pool 3×3 stride 2 with 'SAME' padding (padding never wins the max)."""
    if tf_same_padding:
        return F.max_pool2d(F.pad(x, _tf_same_pads(x.shape[-2:], (3, 3), (2, 2)), value=-math.inf), 3, 2)
    return F.max_pool2d(x, 3, 2, padding=1)


class _PreActBlock(nn.Module):
    """What both pre-activation blocks share: BN+ReLU on the input, the (projected) shortcut taken
    from it, and the temporal shift of the residual branch's input (BraVe shifts there only)."""

    def __init__(self, cin: int, cout: int, stride: int, use_projection: bool, fold_div: int | None,
                 tf_same_padding: bool):
        super().__init__()
        self.fold_div = fold_div
        self.batch_norm = nn.BatchNorm2d(cin)
        if use_projection:
            self.shortcut_conv = SameConv2d(cin, cout, 1, stride, tf_same_padding)

    def preactivate(self, x: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
        """``(B·T)×C×H×W`` → (residual-branch input, shortcut)."""
        preact = F.relu(self.batch_norm(x))
        shortcut = self.shortcut_conv(preact) if hasattr(self, "shortcut_conv") else x
        if self.fold_div:
            preact = temporal_shift(preact, num_frames, self.fold_div)
        return preact, shortcut


class PreActBottleneck(_PreActBlock):
    """Pre-activation bottleneck with an optional temporal shift in the residual branch (BraVe's block)."""

    def __init__(
        self, cin: int, cout: int, stride: int, use_projection: bool, fold_div: int | None, tf_same_padding: bool
    ):
        super().__init__(cin, cout, stride, use_projection, fold_div, tf_same_padding)
        mid = cout // 4
        self.conv_0 = SameConv2d(cin, mid, 1, 1, tf_same_padding)
        self.batch_norm_1 = nn.BatchNorm2d(mid)
        self.conv_1 = SameConv2d(mid, mid, 3, stride, tf_same_padding)
        self.batch_norm_2 = nn.BatchNorm2d(mid)
        self.conv_2 = SameConv2d(mid, cout, 1, 1, tf_same_padding)

    def forward(self, x: Tensor, num_frames: int = 1) -> Tensor:
        preact, shortcut = self.preactivate(x, num_frames)
        residual = self.conv_0(preact)
        residual = self.conv_1(F.relu(self.batch_norm_1(residual)))
        residual = self.conv_2(F.relu(self.batch_norm_2(residual)))
        return shortcut + residual


class PreActBasicBlock(_PreActBlock):
    """Pre-activation basic block (3×3, 3×3) with an optional temporal shift before ``conv_0``."""

    def __init__(
        self, cin: int, cout: int, stride: int, use_projection: bool, fold_div: int | None, tf_same_padding: bool
    ):
        super().__init__(cin, cout, stride, use_projection, fold_div, tf_same_padding)
        self.conv_0 = SameConv2d(cin, cout, 3, stride, tf_same_padding)
        self.batch_norm_1 = nn.BatchNorm2d(cout)
        self.conv_1 = SameConv2d(cout, cout, 3, 1, tf_same_padding)

    def forward(self, x: Tensor, num_frames: int = 1) -> Tensor:
        preact, shortcut = self.preactivate(x, num_frames)
        return shortcut + self.conv_1(F.relu(self.batch_norm_1(self.conv_0(preact))))


# depth -> (block class, blocks per unit, unit output channels at width 1)
PREACT_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, ...], tuple[int, ...]]] = {
    18: (PreActBasicBlock, (2, 2, 2, 2), (64, 128, 256, 512)),
    34: (PreActBasicBlock, (3, 4, 6, 3), (64, 128, 256, 512)),
    50: (PreActBottleneck, (3, 4, 6, 3), (256, 512, 1024, 2048)),
    101: (PreActBottleneck, (3, 4, 23, 3), (256, 512, 1024, 2048)),
}


class PreActUnit(nn.Module):
    """One unit (``block_0``, ``block_1``, …); the first block carries the stride and the projection."""

    def __init__(
        self,
        block: type[nn.Module],
        cin: int,
        cout: int,
        num_blocks: int,
        stride: int,
        fold_div: int | None,
        tf_same_padding: bool,
    ):
        super().__init__()
        self.num_blocks = num_blocks
        for i in range(num_blocks):
            block_in, block_stride = (cin, stride) if i == 0 else (cout, 1)
            use_projection = i == 0 and (block_in != cout or block_stride != 1)
            setattr(self, f"block_{i}", block(block_in, cout, block_stride, use_projection, fold_div, tf_same_padding))

    def forward(self, x: Tensor, num_frames: int = 1) -> Tensor:
        for i in range(self.num_blocks):
            x = getattr(self, f"block_{i}")(x, num_frames)
        return x


def scaled_channels(channels: int, width_mult: float) -> int:
    """``channels · width_mult`` rounded, at least 1."""
    return max(1, int(round(channels * width_mult)))


def init_haiku_style(module: nn.Module) -> None:
    """Haiku's defaults: conv ``TruncatedNormal(stddev=sqrt(1/fan_in))`` cut at ±2 stddev (no
    truncation correction: an earlier version divided by 0.8796 and drew weights 1.136× too large);
    BN scale 1, offset 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(1.0 / fan_in)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TSMResNet(nn.Module):
    """Pre-activation TSM-ResNet on ``B×C×T×H×W``; embedding = spatial then temporal mean, ``B×D``.

    Args:
        depth: 18, 34, 50 or 101.
        width_mult: multiplies the stem and every unit's channels (BraVe uses 1 and 2; the tiny
            variant 1/8).
        fold_div: shift ``C // fold_div`` channels each way (BraVe: 8); ``None`` disables the shift.
        blocks: override the blocks per unit (e.g. ``(1, 1, 1, 1)``).
        in_channels: 3 for RGB, 2 for optical flow.
        tf_same_padding: Haiku-exact 'SAME' padding (for BraVe checkpoints).
    """

    def __init__(
        self,
        depth: int = 50,
        width_mult: float = 1.0,
        fold_div: int | None = 8,
        blocks: Sequence[int] | None = None,
        in_channels: int = 3,
        tf_same_padding: bool = False,
    ):
        super().__init__()
        if depth not in PREACT_DEPTHS:
            raise ValueError(f"TSM-ResNet depth must be one of {sorted(PREACT_DEPTHS)}, got {depth}")
        block, default_blocks, channels = PREACT_DEPTHS[depth]
        blocks = tuple(blocks) if blocks is not None else default_blocks
        self.tf_same_padding = tf_same_padding
        stem_channels = scaled_channels(64, width_mult)
        self.tsm_resnet_stem = SameConv2d(in_channels, stem_channels, 7, 2, tf_same_padding)
        cin = stem_channels
        for u, (c, n, stride) in enumerate(zip(channels, blocks, (1, 2, 2, 2))):
            cout = scaled_channels(c, width_mult)
            setattr(self, f"tsm_resnet_unit_{u}", PreActUnit(block, cin, cout, n, stride, fold_div, tf_same_padding))
            cin = cout
        self.batch_norm = nn.BatchNorm2d(cin)
        self.embed_dim = cin
        init_haiku_style(self)

    def forward(self, x: Tensor, return_features: bool = False):
        """``x``: ``B×C×T×H×W`` → ``B×D``; with ``return_features`` also the map ``B×D×T×H'×W'``."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        net = max_pool_same(self.tsm_resnet_stem(frames), self.tf_same_padding)
        for u in range(4):
            net = getattr(self, f"tsm_resnet_unit_{u}")(net, t)
        net = F.relu(self.batch_norm(net))
        # BraVe: mean over (H, W) per frame, then over time.
        embedding = net.mean(dim=(2, 3)).reshape(b, t, -1).mean(dim=1)
        if not return_features:
            return embedding
        fmap = net.reshape(b, t, *net.shape[1:]).transpose(1, 2)
        return embedding, fmap


def tsm_resnet18(**kwargs) -> TSMResNet:
    """Pre-activation TSM-ResNet-18 (basic blocks; not in BraVe)."""
    return TSMResNet(depth=18, **kwargs)


def tsm_resnet50(**kwargs) -> TSMResNet:
    """BraVe's TSM-ResNet-50 ×1 (2048-d embedding)."""
    return TSMResNet(depth=50, **kwargs)


def tsm_resnet50_x2(**kwargs) -> TSMResNet:
    """BraVe's TSM-ResNet-50 ×2 (4096-d embedding)."""
    kwargs.setdefault("width_mult", 2)
    return TSMResNet(depth=50, **kwargs)


def tsm_resnet_tiny(**kwargs) -> TSMResNet:
    """TSM-ResNet-50 structure at width ×1/8 with one block per unit (256-d) for CPU tests."""
    kwargs.setdefault("width_mult", 0.125)
    kwargs.setdefault("blocks", (1, 1, 1, 1))
    return TSMResNet(depth=50, **kwargs)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "tsm_resnet18": tsm_resnet18,
    "tsm_resnet50": tsm_resnet50,
    "tsm_resnet50_x2": tsm_resnet50_x2,
    "tsm_resnet_tiny": tsm_resnet_tiny,
}
