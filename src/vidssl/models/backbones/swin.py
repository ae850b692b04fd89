"""Video Swin Transformers (Liu et al.) from torchvision's ``SwinTransformer3d``, as backbones.

``VideoSwin`` subclasses torchvision's ``SwinTransformer3d`` (weights=None; nothing is ever
downloaded) and only changes what a backbone needs: no classifier, ``forward(x,
return_features)`` returning the pooled embedding ``B×C`` (mean of the final LayerNorm'd tokens)
and the token map ``B×C×T/2/…×H/32×W/32``, an optional learnable mask token, and
:meth:`VideoSwin.forward_stages` for the per-stage outputs. Parameter names are torchvision's
(minus ``head``), so torchvision's Kinetics checkpoints load with ``strict=False``.

Registry names (torchvision's configurations; patch (2, 4, 4), window (8, 7, 7), MLP ratio 4):

- ``swin3d_t``: embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24) → 768-d, 27.85 M parameters;
- ``swin3d_s``: embed 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24) → 768-d, 49.51 M;
- ``swin3d_b``: embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32) → 1024-d, 87.64 M. This is
  BEVT's video backbone (§3.3 of the reference): same sizes, patch norm, relative position bias
  table (2·8-1)(2·7-1)(2·7-1) per head, shifted windows with the shift zeroed on axes no bigger
  than the window. BEVT uses drop path 0.3: pass ``stochastic_depth_prob=0.3`` (torchvision's
  default is 0.1).
- ``swin3d_tiny``: embed 16, depths (1, 1, 2, 1), heads (1, 2, 2, 4), window (2, 4, 4) for CPU tests.

What BEVT needs that torchvision's model lacks, and where it stands here:

- **Masked-token input**: BEVT replaces masked patch tokens by a learned ``mask_token``
  (``x·(1-m) + mask_token·m``) right after the patch embedding. Supported: build with
  ``mask_token=True`` and pass ``mask`` (``B×T'×H'×W'`` at the patch-token grid; BEVT's 14×14
  mask units are nearest-upsampled ×4 to that grid by the caller).
- **Intermediate outputs** for its FPN-style decoder (stage-3 output x3 before patch merging,
  and x4): :meth:`VideoSwin.forward_stages` returns every stage's pre-merging tokens.
- **Not provided here** (BEVT method code must add them): the 2-D image stream
  (``patch_embed_2d`` = Conv2d(3,128,4,4)+LN and 2-D window attention that reads the 3-D bias
  table at temporal offset 0 with a 7×7 window/shift 3), the decoder heads (``fpn``, ``fpn_s``,
  ``fpn_t``, ``lm_down(_st)``, ``lm_head``), and inflation of 2-D image checkpoints (patch kernel
  repeated over time /2, bias table tiled 15× over time).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.video.swin_transformer import PatchEmbed3d, SwinTransformer3d


class VideoSwin(SwinTransformer3d):
    """Video Swin Transformer backbone on ``B×C×T×H×W``.

    Args:
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, stochastic_depth_prob:
            as torchvision's ``SwinTransformer3d``.
        in_channels: 3 for RGB (2 for optical flow).
        mask_token: create a learnable token (init N(0, 0.02) truncated) that replaces masked
            patch tokens when ``forward`` gets a ``mask``.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = (2, 4, 4),
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] = (8, 7, 7),
        mlp_ratio: float = 4.0,
        stochastic_depth_prob: float = 0.1,
        in_channels: int = 3,
        mask_token: bool = False,
    ):
        super().__init__(
            patch_size=list(patch_size),
            embed_dim=embed_dim,
            depths=list(depths),
            num_heads=list(num_heads),
            window_size=list(window_size),
            mlp_ratio=mlp_ratio,
            stochastic_depth_prob=stochastic_depth_prob,
            patch_embed=partial(PatchEmbed3d, in_channels=in_channels),
        )
        self.head = nn.Identity()  # a backbone has no classifier
        self.embed_dim = self.num_features
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, 1, embed_dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def _embed(self, x: Tensor, mask: Tensor | None) -> Tensor:
        tokens = self.patch_embed(x)  # B×T'×H'×W'×C
        if mask is not None:
            if not hasattr(self, "mask_token"):
                raise ValueError("this VideoSwin has no mask token; build it with mask_token=True to pass a mask")
            if tuple(mask.shape) != tuple(tokens.shape[:4]):
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} must equal the patch-token grid {tuple(tokens.shape[:4])}"
                )
            m = mask.to(tokens.dtype).unsqueeze(-1)
            tokens = tokens * (1 - m) + self.mask_token.to(tokens.dtype) * m
        return self.pos_drop(tokens)

    def forward_stages(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Each stage's output tokens before patch merging, ``B×T'×H_s×W_s×C_s`` (channels last, no final norm)."""
        tokens = self._embed(x, mask)
        stages = []
        for layer in self.features:
            tokens = layer(tokens)
            if isinstance(layer, nn.Sequential):  # a stage of Swin blocks (the others merge patches)
                stages.append(tokens)
        return stages

    def forward(self, x: Tensor, return_features: bool = False, mask: Tensor | None = None):
        """``B×C×T×H×W`` → ``B×D`` (and the map ``B×D×T'×H'×W'`` after the final LayerNorm)."""
        tokens = self.features(self._embed(x, mask))
        fmap = self.norm(tokens).permute(0, 4, 1, 2, 3)
        embedding = fmap.mean(dim=(2, 3, 4))
        return (embedding, fmap) if return_features else embedding


def swin3d_t(**kwargs) -> VideoSwin:
    """Video Swin-T (torchvision ``swin3d_t`` without head)."""
    return VideoSwin(**{"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), **kwargs})


def swin3d_s(**kwargs) -> VideoSwin:
    """Video Swin-S (torchvision ``swin3d_s`` without head)."""
    return VideoSwin(**{"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), **kwargs})


def swin3d_b(**kwargs) -> VideoSwin:
    """Video Swin-B (torchvision ``swin3d_b`` without head; BEVT's backbone with ``stochastic_depth_prob=0.3``)."""
    return VideoSwin(**{"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), **kwargs})


def swin3d_tiny(**kwargs) -> VideoSwin:
    """A 0.36 M-parameter Video Swin for CPU tests (128-d)."""
    defaults = {"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 2, 4), "window_size": (2, 4, 4)}
    return VideoSwin(**{**defaults, **kwargs})


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "swin3d_t": swin3d_t,
    "swin3d_s": swin3d_s,
    "swin3d_b": swin3d_b,
    "swin3d_tiny": swin3d_tiny,
}
