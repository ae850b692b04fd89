"""STiCA's video encoder: R(2+1)D-18 feature map + temporal pooling (GAP or a small transformer).

Reference: brave-gdt-stica.md C2 (``model.py:Stica_TransformerFMCrop``, ``src/transformer.py``). The
backbone's map ``B×512×T'×7×7`` (``pre_pool=True``) is pooled by

- ``pooling_layers = 0``: global average pooling (GDT's encoder);
- ``pooling_layers > 0``: :class:`TransformerPooling` over the ``T'`` time steps of the spatially
  averaged map (one token per step), output = the first token.

The pooling belongs to the encoder: STiCA fine-tunes it with the backbone (``Finetune_Model_Agg``),
so vidssl exports and evaluates backbone + pooling together (registry names ``r2plus1d18_stica`` and
``r2plus1d18_stica_tiny``).

One departure: STiCA average-pools the map to ``transformer_time_dim`` tokens and reshapes with a
fixed ``duration``; when the two differ (60 frames with the default 4) the ``view`` mixes batch
elements, and a temporal feature crop of 3 steps is interpolated to 4 tokens. vidssl always makes
one token per time step of the map it pools (the map's own duration), so neither can happen.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.models.backbones.resnet3d import TINY_WIDTH, r2plus1d18_tv


class QKAttention(nn.Module):
    """STiCA's multi-head self-attention with ``qkv_mha=False``: learned q and k projections, the
    values and the output are the input itself (no v/out projections). Scaled dot product, no mask."""

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.q_lin = nn.Linear(dim, dim)
        self.k_lin = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        head = dim // self.num_heads

        def split(t: Tensor) -> Tensor:
            return t.view(batch, length, self.num_heads, head).transpose(1, 2)

        q, k, v = split(self.q_lin(x)) / math.sqrt(head), split(self.k_lin(x)), split(x)
        weights = torch.softmax((q @ k.transpose(2, 3)).float(), dim=-1).to(q.dtype)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return (weights @ v).transpose(1, 2).reshape(batch, length, dim)


class PostLNBlock(nn.Module):
    """``x = LN(x + Dropout(MHA(x)))``; ``x = LN(x + FFN(x))`` with FFN ``dim → 2048 → dim`` (GELU), LN eps 1e-12."""

    def __init__(self, dim: int, num_heads: int = 4, ffn_dim: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.mha = QKAttention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.lin1 = nn.Linear(dim, ffn_dim)
        self.lin2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + F.dropout(self.mha(x), p=self.dropout, training=self.training))
        ffn = F.dropout(self.lin2(F.gelu(self.lin1(x))), p=self.dropout, training=self.training)
        return self.norm2(x + ffn)


class TransformerPooling(nn.Module):
    """Tokens ``B×L×D`` → ``B×D``: ``num_layers`` post-LN blocks, then the first token (no CLS token,
    no positional embedding). Linear layers N(0, 0.02) with zero bias, LayerNorm (1, 0), as STiCA.

    Example:
        >>> TransformerPooling(16, num_layers=2, num_heads=4)(torch.randn(3, 4, 16)).shape
        torch.Size([3, 16])
    """

    def __init__(self, dim: int = 512, num_layers: int = 2, num_heads: int = 4, ffn_dim: int = 2048,
                 dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(PostLNBlock(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return tokens[:, 0]


class PooledVideoEncoder(nn.Module):
    """A video backbone's feature map pooled by GAP or :class:`TransformerPooling` (see the module docstring).

    ``features(x)`` → map ``B×D×T'×H'×W'``; ``pool(map)`` → ``B×D`` (any map, e.g. a feature crop);
    ``forward(x, return_features=False)`` → ``pool(features(x))`` (and the map on request).
    """

    def __init__(self, backbone: nn.Module, pooling_layers: int = 2, num_heads: int = 4, ffn_dim: int = 2048,
                 dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.embed_dim = int(backbone.embed_dim)
        self.pooling = (TransformerPooling(self.embed_dim, pooling_layers, num_heads, ffn_dim, dropout)
                        if pooling_layers > 0 else None)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)

    def pool(self, fmap: Tensor) -> Tensor:
        """``B×D×T×H×W`` → ``B×D``: one token per time step (the spatial mean), transformer, first token."""
        if self.pooling is None:
            return fmap.mean(dim=(2, 3, 4))
        return self.pooling(fmap.mean(dim=(3, 4)).transpose(1, 2))

    def forward(self, x: Tensor, return_features: bool = False):
        fmap = self.features(x)
        embedding = self.pool(fmap)
        return (embedding, fmap) if return_features else embedding


def r2plus1d18_stica(width: int = 64, pooling_layers: int = 2, num_heads: int = 4, ffn_dim: int = 2048,
                     dropout: float = 0.0, in_channels: int = 3) -> PooledVideoEncoder:
    """STiCA's encoder: torchvision R(2+1)D-18 (GDT's ``vmz.r2plus1d_18``) + transformer pooling (512-d at width 64)."""
    return PooledVideoEncoder(r2plus1d18_tv(width, in_channels), pooling_layers, num_heads, ffn_dim, dropout)


def r2plus1d18_stica_tiny(**kwargs) -> PooledVideoEncoder:
    """STiCA's encoder at width 8 (64-d), FFN 256, for CPU tests and the tiny presets."""
    kwargs.setdefault("width", TINY_WIDTH)
    kwargs.setdefault("ffn_dim", 256)
    return r2plus1d18_stica(**kwargs)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "r2plus1d18_stica": r2plus1d18_stica,
    "r2plus1d18_stica_tiny": r2plus1d18_stica_tiny,
}
