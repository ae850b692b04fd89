"""3-D ResNets: FGKVMemPred's R3D-18 / R(2+1)D-18 / Slow-R18 and torchvision's R3D-18 / R(2+1)D-18.

Every network maps a clip ``B×C×T×H×W`` to a pooled embedding ``B×D`` (global average of
the last feature map) and, with ``return_features=True``, also returns that map
``B×D×T'×H'×W'``. Each has a ``width`` knob (channels of the first stage; 64 in the papers)
so that tiny CPU variants exist (``*_tiny``: width 8, same depth).

(This file is longer than vidssl's ~400-line norm on purpose: the five networks share their
stem, block and stage code, and each documents its departures from the original next to it.)

Registry names
--------------
``r3d18_fgkv``
    R3D-18 as FGKVMemPred builds it (PySlowFast ``ARCH r3d_shallow``). Stem Conv(3,7,7)/(1,2,2),
    BN, ReLU, no max-pool. Four stages of two basic blocks (3×3×3 convs); stages 3-5 stride 2 in
    T, H *and* W. With ``modify_last=True`` (PySlowFast's ``MODEL.MODIFY_LAST`` default, which the
    R3D configs keep) block 0 of res5 is replaced: its residual branch becomes a *single*
    Conv(3,3,3) with stride (1,2,2) and temporal dilation 2 (no BN/ReLU/second conv) and its
    shortcut a 1×1×1 conv with stride (1,2,2) (+BN). 16×112² → res5 map 4×7×7.
``r2plus1d18_fgkv``
    FGKVMemPred's "R(2+1)D-18" (``r2plus1d_shallow``). The original code forces **one block per
    stage** (a global mutation of ``_MODEL_STAGE_DEPTH``), so it is an R(2+1)D-10 in fact; we
    build what the code builds (``blocks=(1, 1, 1, 1)``; pass ``blocks=(2, 2, 2, 2)`` for a real
    -18). Stem Conv(1,7,7) 3→83 (hard-coded mid width; scaled with ``width``), BN, ReLU,
    Conv(3,1,1) 83→64, BN, ReLU. Each block: [(1,3,3) conv to mid, BN, ReLU, (3,1,1) conv with
    the temporal stride, BN, ReLU] twice (the second pair ends in BN), add, ReLU;
    mid = ⌊27·Cin·Cout/(9·Cin+3·Cout)⌋. Shortcut = 1×1×1 conv (spatial stride) → BN → ReLU →
    1×1×1 conv (temporal stride) → BN. 16×112² → 2×7×7.
``slow_r18``
    FGKVMemPred's Slow-R18 (PySlowFast ``ARCH slow``, ``basic_transform``). Stem Conv(1,7,7)
    /(1,2,2) then max-pool (1,3,3)/(1,2,2) (``stem_pool=True``, the Kinetics config's
    ``basic_stem``; the UCF101 config uses ``r3d_stem`` = no pool → ``stem_pool=False``). Blocks:
    Conv(Tk,3,3) with spatial stride, BN, ReLU, Conv(1,3,3), BN; Tk = 1,1,3,3 in res2-res5;
    spatial stride 2 in res3-res5, never temporal. 8×224² → 8×7×7.
``r3d18_tv`` / ``r2plus1d18_tv``
    torchvision's ``r3d_18`` / ``r2plus1d_18`` (GDT and STiCA use the latter; GDT's ``vmz.py`` is
    the same network), rebuilt from torchvision's own ``BasicBlock`` / ``Conv3DSimple`` /
    ``Conv2Plus1D`` so that ``width`` can shrink it. At width 64 the state-dict keys and shapes
    equal torchvision's (minus ``fc``), so torchvision checkpoints load directly.

Parameter counts (backbone only, no classifier; measured by ``tests/models/test_backbones.py``)
against the FGKVMemPred README table:

=====================  ===========  ==========  =============================================
network                 vidssl       README      note
=====================  ===========  ==========  =============================================
r3d18_fgkv              26.09 M      31.8 M      MODIFY_LAST as built by the released code
r3d18_fgkv (no modify)  33.17 M      31.8 M      two 3×3×3 convs in res5.0
r2plus1d18_fgkv         14.37 M      14.4 M      matches (1 block per stage)
slow_r18                20.02 M      20.2 M      within 1 %; the README number is rounded
r3d18_tv                33.17 M      --          torchvision r3d_18 without fc
r2plus1d18_tv           31.30 M      --          torchvision r2plus1d_18 without fc
=====================  ===========  ==========  =============================================

Neither variant of R3D-18 reaches 31.8 M (and adding BYOL's 3.15 M projector does not either),
so the README figure cannot be reproduced from the code; we build the architecture the code
builds and treat 31.8 M as nominal.

Checkpoint names: the FGKVMemPred modules keep PySlowFast's leaf names, so a released
checkpoint maps with two substitutions: ``s1.pathway0_stem.`` → ``stem.`` and
``s{k}.pathway0_res{i}.`` → ``res{k}.{i}.`` (branch names ``branch1``, ``branch1_bn``,
``branch2.a``, ``branch2.a_bn``, ``branch2.b``, ``branch2.b_bn``, ``branch2.a_conv2``,
``branch2.a_bn1``, ``branch2.b_conv2``, ``branch2.b_bn1`` are kept as they are).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

from torch import Tensor, nn
from torchvision.models.video import resnet as tv_resnet


def _init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) init of every Conv3d, BN weight 1 / bias 0, as torchvision and PySlowFast do."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv(cin: int, cout: int, kernel, stride=1, padding=0, dilation=1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)


class _PooledBackbone(nn.Module):
    """Shared ``forward``: ``features(x)`` → map ``B×D×T'×H'×W'``; embedding = its global mean."""

    embed_dim: int

    def features(self, x: Tensor) -> Tensor:
        """The last feature map ``B×D×T'×H'×W'``; each subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define features()")

    def forward(self, x: Tensor, return_features: bool = False):
        """``x``: ``B×C×T×H×W`` → ``B×D`` (and the map ``B×D×T'×H'×W'`` if ``return_features``)."""
        fmap = self.features(x)
        embedding = fmap.mean(dim=(2, 3, 4))
        return (embedding, fmap) if return_features else embedding


# --------------------------------------------------------------------------------------------
# FGKVMemPred (PySlowFast) networks
# --------------------------------------------------------------------------------------------


class ResUnit(nn.Module):
    """PySlowFast ``ResBlock``: ``relu(shortcut(x) + branch2(x))``; shortcut = identity or branch1 + BN."""

    def __init__(self, branch2: nn.Module, branch1: nn.Module | None = None, out_channels: int = 0):
        super().__init__()
        if branch1 is not None:
            self.branch1 = branch1
            self.branch1_bn = nn.BatchNorm3d(out_channels)
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.branch2(x)
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + residual)


class R3DTransform(nn.Module):
    """Residual branch of R3D: Conv 3×3×3 (stride s in T, H, W), BN, ReLU, Conv 3×3×3, BN."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.a = _conv(cin, cout, 3, stride=stride, padding=1)
        self.a_bn = nn.BatchNorm3d(cout)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = _conv(cout, cout, 3, padding=1)
        self.b_bn = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.b_bn(self.b(self.a_relu(self.a_bn(self.a(x)))))


def _r2plus1d_mid(cin: int, cout: int) -> int:
    """Mid width that gives a (2+1)D pair the parameter count of one 3×3×3 conv (R(2+1)D paper)."""
    return (cin * cout * 27) // (cin * 9 + 3 * cout)


class R2Plus1DTransform(nn.Module):
    """Residual branch of FGKVMemPred's R(2+1)D: two (1,3,3)→(3,1,1) pairs, each conv followed by BN.

    Spatial stride on the first (1,3,3) conv, temporal stride on the first (3,1,1) conv. Unlike
    torchvision, the second pair computes its own mid width from (Cout, Cout).
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid_a = _r2plus1d_mid(cin, cout)
        self.a = _conv(cin, mid_a, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))
        self.a_bn = nn.BatchNorm3d(mid_a)
        self.a_relu = nn.ReLU(inplace=True)
        self.a_conv2 = _conv(mid_a, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0))
        self.a_bn1 = nn.BatchNorm3d(cout)
        mid_b = _r2plus1d_mid(cout, cout)
        self.b = _conv(cout, mid_b, (1, 3, 3), padding=(0, 1, 1))
        self.b_bn = nn.BatchNorm3d(mid_b)
        self.b_relu = nn.ReLU(inplace=True)
        self.b_conv2 = _conv(mid_b, cout, (3, 1, 1), padding=(1, 0, 0))
        self.b_bn1 = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        # The original re-uses ``a_relu`` after ``a_bn1``; a ReLU has no state, so this is the same.
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.a_relu(self.a_bn1(self.a_conv2(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.b_bn1(self.b_conv2(x))


class SlowTransform(nn.Module):
    """Residual branch of Slow: Conv (Tk,3,3) with spatial stride, BN, ReLU, Conv (1,3,3), BN."""

    def __init__(self, cin: int, cout: int, stride: int, temporal_kernel: int):
        super().__init__()
        self.a = _conv(
            cin, cout, (temporal_kernel, 3, 3), stride=(1, stride, stride), padding=(temporal_kernel // 2, 1, 1)
        )
        self.a_bn = nn.BatchNorm3d(cout)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = _conv(cout, cout, (1, 3, 3), padding=(0, 1, 1))
        self.b_bn = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.b_bn(self.b(self.a_relu(self.a_bn(self.a(x)))))


def _r3d_shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    return _conv(cin, cout, 1, stride=stride)


def _r2plus1d_shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    mid = (cin * cout) // (cin + cout)
    return nn.Sequential(
        _conv(cin, mid, 1, stride=(1, stride, stride)),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        _conv(mid, cout, 1, stride=(stride, 1, 1)),
    )


def _slow_shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    return _conv(cin, cout, 1, stride=(1, stride, stride))


def _make_stage(
    cin: int,
    cout: int,
    num_blocks: int,
    stride: int,
    make_transform: Callable[[int, int, int], nn.Module],
    make_shortcut: Callable[[int, int, int], nn.Module],
) -> nn.Sequential:
    """Blocks of one stage; the first carries the stride and, when shapes change, a projection shortcut."""
    units = []
    for i in range(num_blocks):
        block_in, block_stride = (cin, stride) if i == 0 else (cout, 1)
        needs_projection = block_in != cout or block_stride != 1
        branch1 = make_shortcut(block_in, cout, block_stride) if needs_projection else None
        units.append(ResUnit(make_transform(block_in, cout, block_stride), branch1, cout))
    return nn.Sequential(*units)


class SlowFastStyleResNet(_PooledBackbone):
    """A single-pathway PySlowFast ResNet: ``stem`` then stages ``res2``…``res5`` (no head).

    Use the builders (:func:`r3d18_fgkv`, :func:`r2plus1d18_fgkv`, :func:`slow_r18`); they decide
    the stem and the residual branches.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], embed_dim: int):
        super().__init__()
        self.stem = stem
        self.res2, self.res3, self.res4, self.res5 = stages
        self.embed_dim = embed_dim
        _init_conv_bn(self)

    def features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        # PySlowFast puts a max-pool of size (1,1,1) after res2 for Slow; it is the identity.
        return self.res5(self.res4(self.res3(self.res2(x))))


def _stage_channels(width: int) -> list[int]:
    return [width, 2 * width, 4 * width, 8 * width]


def _stages(width, blocks, make_transform, make_shortcut) -> list[nn.Sequential]:
    channels = _stage_channels(width)
    strides = (1, 2, 2, 2)
    ins = [width] + channels[:-1]
    return [
        _make_stage(cin, cout, n, s, lambda i, o, st, k=k: make_transform(k, i, o, st), make_shortcut)
        for k, (cin, cout, n, s) in enumerate(zip(ins, channels, blocks, strides))
    ]


def r3d18_fgkv(
    width: int = 64, modify_last: bool = True, blocks: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3
) -> SlowFastStyleResNet:
    """FGKVMemPred's R3D-18 (see the module docstring); ``modify_last`` = PySlowFast ``MODEL.MODIFY_LAST``."""
    stem = nn.Sequential(
        OrderedDict(
            conv=_conv(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3)),
            bn=nn.BatchNorm3d(width),
            relu=nn.ReLU(inplace=True),
        )
    )
    stages = _stages(width, blocks, lambda k, i, o, s: R3DTransform(i, o, s), _r3d_shortcut)
    if modify_last:
        # The paper's "temporal stride 1 + dilation 2 in the last stage (following TCLR)". The
        # original hard-codes 256→512; we scale with ``width`` (identical at width 64).
        c4, c5 = 4 * width, 8 * width
        stages[3][0] = ResUnit(
            branch2=_conv(c4, c5, 3, stride=(1, 2, 2), padding=(2, 1, 1), dilation=(2, 1, 1)),
            branch1=_conv(c4, c5, 1, stride=(1, 2, 2)),
            out_channels=c5,
        )
    return SlowFastStyleResNet(stem, stages, embed_dim=8 * width)


def r2plus1d18_fgkv(
    width: int = 64, blocks: Sequence[int] = (1, 1, 1, 1), in_channels: int = 3
) -> SlowFastStyleResNet:
    """FGKVMemPred's R(2+1)D ("-18", really one block per stage; see the module docstring)."""
    stem_mid = round(83 * width / 64)  # the original hard-codes 83 (a comment says torchvision's 45)
    stem = nn.Sequential(
        OrderedDict(
            conv1=_conv(in_channels, stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)),
            bn1=nn.BatchNorm3d(stem_mid),
            relu1=nn.ReLU(inplace=True),
            conv2=_conv(stem_mid, width, (3, 1, 1), padding=(1, 0, 0)),
            bn2=nn.BatchNorm3d(width),
            relu2=nn.ReLU(inplace=True),
        )
    )
    stages = _stages(width, blocks, lambda k, i, o, s: R2Plus1DTransform(i, o, s), _r2plus1d_shortcut)
    return SlowFastStyleResNet(stem, stages, embed_dim=8 * width)


SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)  # res2..res5, PySlowFast _TEMPORAL_KERNEL_BASIS["slow"]


def slow_r18(
    width: int = 64, stem_pool: bool = True, blocks: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3
) -> SlowFastStyleResNet:
    """FGKVMemPred's Slow-R18; ``stem_pool=False`` reproduces the UCF101 config's pool-free ``r3d_stem``."""
    layers = OrderedDict(
        conv=_conv(in_channels, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)),
        bn=nn.BatchNorm3d(width),
        relu=nn.ReLU(inplace=True),
    )
    if stem_pool:
        layers["pool_layer"] = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
    stages = _stages(
        width, blocks, lambda k, i, o, s: SlowTransform(i, o, s, SLOW_TEMPORAL_KERNELS[k]), _slow_shortcut
    )
    return SlowFastStyleResNet(nn.Sequential(layers), stages, embed_dim=8 * width)


# --------------------------------------------------------------------------------------------
# torchvision networks with a width knob
# --------------------------------------------------------------------------------------------


class TorchvisionVideoResNet(_PooledBackbone):
    """torchvision's ``VideoResNet`` body (``stem``, ``layer1``…``layer4``) without ``fc``, any width.

    Built from torchvision's ``BasicBlock`` and conv builders, so the blocks are torchvision's
    own (including its quirk of re-using the first conv's mid width in the second (2+1)D conv).
    """

    def __init__(
        self,
        conv_builder: type[nn.Module],
        stem: nn.Module,
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
    ):
        super().__init__()
        self.stem = stem
        inplanes = width
        for k, (planes, n, stride) in enumerate(zip(_stage_channels(width), blocks, (1, 2, 2, 2)), start=1):
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv3d(
                        inplanes, planes, 1, stride=conv_builder.get_downsample_stride(stride), bias=False
                    ),
                    nn.BatchNorm3d(planes),
                )
            layer = [tv_resnet.BasicBlock(inplanes, planes, conv_builder, stride, downsample)]
            layer += [tv_resnet.BasicBlock(planes, planes, conv_builder) for _ in range(1, n)]
            setattr(self, f"layer{k}", nn.Sequential(*layer))
            inplanes = planes
        self.embed_dim = 8 * width
        _init_conv_bn(self)

    def features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def r3d18_tv(width: int = 64, in_channels: int = 3) -> TorchvisionVideoResNet:
    """torchvision ``r3d_18`` (no fc): stem Conv(3,7,7)/(1,2,2), stages stride 2 in T, H, W."""
    stem = nn.Sequential(
        nn.Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )
    return TorchvisionVideoResNet(tv_resnet.Conv3DSimple, stem, width)


def r2plus1d18_tv(width: int = 64, in_channels: int = 3) -> TorchvisionVideoResNet:
    """torchvision ``r2plus1d_18`` (no fc), the R(2+1)D-18 of GDT and STiCA; stem mid width 45·width/64."""
    stem_mid = round(45 * width / 64)
    stem = nn.Sequential(
        nn.Conv3d(in_channels, stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(stem_mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(stem_mid, width, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )
    return TorchvisionVideoResNet(tv_resnet.Conv2Plus1D, stem, width)


TINY_WIDTH = 8


def _tiny(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build_tiny(**kwargs) -> nn.Module:
        kwargs.setdefault("width", TINY_WIDTH)
        return builder(**kwargs)

    build_tiny.__doc__ = f"{builder.__name__} with width {TINY_WIDTH} (CPU tests and tiny presets)."
    return build_tiny


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "r3d18_fgkv": r3d18_fgkv,
    "r2plus1d18_fgkv": r2plus1d18_fgkv,
    "slow_r18": slow_r18,
    "r3d18_tv": r3d18_tv,
    "r2plus1d18_tv": r2plus1d18_tv,
    "r3d18_fgkv_tiny": _tiny(r3d18_fgkv),
    "r2plus1d18_fgkv_tiny": _tiny(r2plus1d18_fgkv),
    "slow_r18_tiny": _tiny(slow_r18),
    "r3d18_tv_tiny": _tiny(r3d18_tv),
    "r2plus1d18_tv_tiny": _tiny(r2plus1d18_tv),
}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (what papers' "Params (M)" columns count)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "BUILDERS",
    "SlowFastStyleResNet",
    "TorchvisionVideoResNet",
    "count_parameters",
    "r2plus1d18_fgkv",
    "r2plus1d18_tv",
    "r3d18_fgkv",
    "r3d18_tv",
    "slow_r18",
]

