"""2-D ResNets (torchvision's v1.5 ResNet) with a width knob: BaSSL's shot encoder, and the base of GDT's audio nets.

``ResNet2d`` is torchvision's ``ResNet`` body (``conv1``, ``bn1``, ``maxpool``, ``layer1``…``layer4``,
no ``fc``) built from torchvision's own ``BasicBlock`` / ``Bottleneck``, but with the stem width
as a parameter so that tiny variants exist. At ``width=64`` the state-dict keys and shapes equal
torchvision's ``resnet18/50`` (minus ``fc``), so torchvision checkpoints load directly.

Registry names
--------------
``image_resnet50``
    BaSSL's shot encoder (``bassl/model/shot_encoder/resnet.py``): torchvision ResNet-50
    (Bottleneck [3, 4, 6, 3], stride on the 3×3 conv), ``zero_init_residual=True``, random init,
    2048-d global-average-pooled output, no fc. Input ``B×3×H×W`` (BaSSL: 224²); with
    ``return_features=True`` also the map ``B×2048×H/32×W/32``. 23.51 M parameters.
``image_resnet_tiny``
    The same at width 8 (256-d), for CPU tests and the tiny movie presets.

BaSSL averages the 2048-d features of a shot's 3 keyframes at evaluation; that is the
caller's job (encode ``B·K×3×H×W``, reshape, mean).
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

BLOCKS_2D: dict[str, type[nn.Module]] = {"basic": tv_resnet.BasicBlock, "bottleneck": tv_resnet.Bottleneck}


class ResNet2d(nn.Module):
    """torchvision-style 2-D ResNet without classifier, any stem width and input channels.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        width: channels of the stem and of stage 1's planes (64 in torchvision).
        in_channels: 3 for RGB images, 1 for spectrograms.
        zero_init_residual: start every residual branch's last BN at 0 (BaSSL sets it).
    """

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if block not in BLOCKS_2D:
            raise ValueError(f"block must be one of {sorted(BLOCKS_2D)}, got {block!r}")
        block_cls = BLOCKS_2D[block]
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for k, (n, stride) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
            planes = width * 2 ** (k - 1)
            out = planes * block_cls.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
                )
            stage = [block_cls(inplanes, planes, stride, downsample)]
            stage += [block_cls(out, planes) for _ in range(1, n)]
            setattr(self, f"layer{k}", nn.Sequential(*stage))
            inplanes = out
        self.embed_dim = inplanes
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's init: He (fan-out) convs, BN 1/0, optionally zero the last BN of each branch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, tv_resnet.Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, tv_resnet.BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def features(self, x: Tensor) -> Tensor:
        """``B×C×H×W`` → last feature map ``B×D×H/32×W/32``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor, return_features: bool = False):
        """``B×C×H×W`` → ``B×D`` global average (and the map ``B×D×H'×W'`` if ``return_features``)."""
        fmap = self.features(x)
        embedding = fmap.mean(dim=(2, 3))
        return (embedding, fmap) if return_features else embedding


def image_resnet50(width: int = 64, zero_init_residual: bool = True, in_channels: int = 3) -> ResNet2d:
    """BaSSL's ResNet-50 shot encoder (torchvision ResNet-50, zero-init residual, no fc)."""
    return ResNet2d("bottleneck", (3, 4, 6, 3), width, in_channels, zero_init_residual)


def image_resnet_tiny(**kwargs) -> ResNet2d:
    """ResNet-50 layout at width 8 (256-d) for CPU tests."""
    kwargs.setdefault("width", 8)
    return image_resnet50(**kwargs)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "image_resnet50": image_resnet50,
    "image_resnet_tiny": image_resnet_tiny,
}
