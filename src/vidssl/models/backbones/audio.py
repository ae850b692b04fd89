"""Audio backbones on log-mel spectrograms ``B×1×time×freq``.

Registry names
--------------
``audio_resnet9``
    GDT's audio ResNet-9 (``GDT:src/resnet.py:resnet9``, ``model.py:152-165``): torchvision ResNet
    v1 with BasicBlock [1, 1, 1, 1], channels 64/128/256/512, conv1 replaced by a 1-channel
    Conv 7×7/2 (which keeps PyTorch's default init; the rest is He fan-out), max-pool, global
    average → 512-d. 4.90 M parameters.
``audio_resnet18``
    The same family with [2, 2, 2, 2] (GDT's ``aud_base_arch='resnet18'``: torchvision ResNet-18
    with a 1-channel conv1). 11.17 M parameters.
``audio_resnet50``
    BraVe's audio backbone (``brave/models/brave/resnet.py``, ``modules.py:45-63``): pre-activation
    ResNetV2-50 (bottlenecks (3, 4, 6, 3), outputs 256…2048, strides (1, 2, 2, 2)), stem Conv 7×7/2
    (no BN/ReLU) + max-pool 3×3/2, projection shortcut from the first block's pre-activation,
    final BN + ReLU, mean over (time, freq) → 2048-d, 23.49 M parameters. BraVe feeds
    ``[B, 3072, 80]`` (10.24 s at 100 Hz × 80 mel bins), i.e. time is the height axis, as in our
    ``B×1×time×freq``.
``audio_resnet9_tiny`` / ``audio_resnet50_tiny``
    Width 8 (64-d) and width ×1/8 with one block per unit (256-d), for CPU tests.

``forward(x, return_features=False)`` returns ``B×D`` and, on request, the map
``B×D×time'×freq'`` (2-D: audio has no separate time and space axes).

GDT's own input is ``[B, 1, 40 (freq), 99 (time)]``, the transpose of ours; a global-pooled CNN
does not care, but a converter of GDT weights must transpose the 7×7 kernels' last two axes.

BraVe weight names (for a converter, as for :mod:`vidssl.models.backbones.tsm`): the modules
here are named ``initial_conv``, ``block_group_{g}.block_{b}.{batch_norm, shortcut_conv, conv_0,
batch_norm_1, conv_1, batch_norm_2, conv_2}`` and ``batch_norm``, which are the Haiku leaf names
under ``broad_audio_embedding/~/res_net_v2/~/`` (Haiku's default name for an unnamed
``ResNetV2``); strip that prefix and replace ``/~/`` by ``.``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.models.backbones.image import ResNet2d
from vidssl.models.backbones.tsm import (
    PREACT_DEPTHS,
    PreActUnit,
    SameConv2d,
    init_haiku_style,
    max_pool_same,
    scaled_channels,
)


def _gdt_audio_resnet(layers: Sequence[int], width: int) -> ResNet2d:
    model = ResNet2d("basic", layers, width=width, in_channels=1)
    # GDT swaps conv1 for a fresh nn.Conv2d after torchvision's init, so it keeps PyTorch's default init.
    model.conv1.reset_parameters()
    return model


def audio_resnet9(width: int = 64) -> ResNet2d:
    """GDT's audio ResNet-9 (512-d at width 64)."""
    return _gdt_audio_resnet((1, 1, 1, 1), width)


def audio_resnet18(width: int = 64) -> ResNet2d:
    """torchvision ResNet-18 with a 1-channel conv1, as GDT builds it (512-d at width 64)."""
    return _gdt_audio_resnet((2, 2, 2, 2), width)


class AudioResNetV2(nn.Module):
    """BraVe's pre-activation ResNetV2 on spectrograms ``B×1×time×freq`` → ``B×D``.

    Args:
        depth: 18, 34, 50 or 101 (BraVe: 50). Depth 18/34 use pre-activation basic blocks (3×3, 3×3);
            BraVe's own basic block has a 1×1 first conv, which we do not copy.
        width_mult: multiplies every width (BraVe: 1).
        blocks: override the blocks per unit.
        tf_same_padding: Haiku-exact 'SAME' padding (for BraVe checkpoints).
    """

    def __init__(
        self,
        depth: int = 50,
        width_mult: float = 1.0,
        blocks: Sequence[int] | None = None,
        in_channels: int = 1,
        tf_same_padding: bool = False,
    ):
        super().__init__()
        if depth not in PREACT_DEPTHS:
            raise ValueError(f"audio ResNetV2 depth must be one of {sorted(PREACT_DEPTHS)}, got {depth}")
        block, default_blocks, channels = PREACT_DEPTHS[depth]
        blocks = tuple(blocks) if blocks is not None else default_blocks
        self.tf_same_padding = tf_same_padding
        cin = scaled_channels(64, width_mult)
        self.initial_conv = SameConv2d(in_channels, cin, 7, 2, tf_same_padding)
        for g, (c, n, stride) in enumerate(zip(channels, blocks, (1, 2, 2, 2))):
            cout = scaled_channels(c, width_mult)
            setattr(self, f"block_group_{g}", PreActUnit(block, cin, cout, n, stride, None, tf_same_padding))
            cin = cout
        self.batch_norm = nn.BatchNorm2d(cin)
        self.embed_dim = cin
        init_haiku_style(self)

    def forward(self, x: Tensor, return_features: bool = False):
        """``B×1×time×freq`` → ``B×D`` (and the map ``B×D×time'×freq'`` if ``return_features``)."""
        net = max_pool_same(self.initial_conv(x), self.tf_same_padding)
        for g in range(4):
            net = getattr(self, f"block_group_{g}")(net)
        fmap = F.relu(self.batch_norm(net))
        embedding = fmap.mean(dim=(2, 3))
        return (embedding, fmap) if return_features else embedding


def audio_resnet50(**kwargs) -> AudioResNetV2:
    """BraVe's audio ResNetV2-50 (2048-d)."""
    return AudioResNetV2(depth=50, **kwargs)


def audio_resnet9_tiny(**kwargs) -> ResNet2d:
    """GDT's ResNet-9 at width 8 (64-d)."""
    kwargs.setdefault("width", 8)
    return audio_resnet9(**kwargs)


def audio_resnet50_tiny(**kwargs) -> AudioResNetV2:
    """BraVe's ResNetV2-50 layout at width ×1/8, one block per unit (256-d)."""
    kwargs.setdefault("width_mult", 0.125)
    kwargs.setdefault("blocks", (1, 1, 1, 1))
    return AudioResNetV2(depth=50, **kwargs)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "audio_resnet9": audio_resnet9,
    "audio_resnet18": audio_resnet18,
    "audio_resnet50": audio_resnet50,
    "audio_resnet9_tiny": audio_resnet9_tiny,
    "audio_resnet50_tiny": audio_resnet50_tiny,
}
