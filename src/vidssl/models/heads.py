"""Projection / prediction heads and FGKVMemPred's key-value memory predictor.

Heads take ``B×D`` vectors. :class:`MLPHead` is the PySlowFast ``MLPHead`` shape used
by BYOL and FGKVMemPred: ``Linear(no bias) → BN → ReLU`` repeated, then a final
``Linear`` with bias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidssl.losses import memory_addressing, memory_readout


class MLPHead(nn.Sequential):
    """``in_dim → hidden_dim (× num_layers-1, BN + ReLU) → out_dim``.

    Example:
        >>> MLPHead(512, 4096, 256)(torch.randn(4, 512)).shape
        torch.Size([4, 256])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, batch_norm: bool = True):
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        super().__init__(*layers)


class KeyValueMemory(nn.Module):
    """FGKVMemPred's key-value memory predictor (``MemoryRecon`` cross branch, §2.4a).

    ``z`` (``B×D``, the online projection) → optional input MLP φ → split into ``num_heads``
    queries → ``A = softmax(scale·cos(q, K))`` over ``num_slots/num_heads`` unit keys per
    head → ``ẑ = A·V`` → ``B×(num_heads·D)`` (then an optional output MLP).

    Keys are the unit rows of a learnable ``N×D`` matrix (the code's ``weight_norm`` with the
    gain fixed at 1 and untrained); values are an ``N×D`` parameter with truncated-normal
    init (std 0.02). Both are learned by backprop only; there is no write rule.
    """

    def __init__(self, dim: int = 256, num_slots: int = 4096, num_heads: int = 1, scale: float = 16.0,
                 input_proj: bool = True, output_proj: bool = False, residual: bool = False) -> None:
        super().__init__()
        if num_slots % num_heads:
            raise ValueError(f"num_slots ({num_slots}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.scale, self.residual = dim, num_heads, scale, residual
        self.input_proj = MLPHead(dim, dim, dim * num_heads) if input_proj else None
        bound = 1.0 / dim**0.5
        self.keys = nn.Parameter(torch.empty(num_slots, dim).uniform_(-bound, bound))
        self.values = nn.Parameter(nn.init.trunc_normal_(torch.empty(num_slots, dim), std=0.02))
        out_dim = dim * num_heads
        self.output_proj = MLPHead(out_dim, dim, out_dim) if output_proj else None

    def addressing(self, z: Tensor) -> Tensor:
        """Slot weights ``B×H×S`` for the projections ``z`` (``B×D``)."""
        query = self.input_proj(z) if self.input_proj is not None else z.repeat(1, self.num_heads)
        query = query.view(z.shape[0], self.num_heads, self.dim)
        keys = self.keys.view(self.num_heads, -1, self.dim)
        return memory_addressing(query, keys, self.scale)

    def forward(self, z: Tensor) -> Tensor:
        weights = self.addressing(z)
        out = memory_readout(weights.to(self.values.dtype), self.values.view(self.num_heads, -1, self.dim))
        if self.output_proj is not None:
            out = self.output_proj(out)
        if self.residual:
            out = out + z.repeat(1, self.num_heads)
        return out
