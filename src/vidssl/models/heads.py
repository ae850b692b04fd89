"""Projection / prediction heads: PySlowFast's MLP (ρBYOL, FGKVMemPred), FGKVMemPred's key-value
memory predictor and BraVe's shared projector/predictor.

Heads take ``B×D`` vectors. :class:`MLPHead` is the PySlowFast ``MLPHead`` shape used
by BYOL and FGKVMemPred: ``Linear(no bias) → BN → ReLU`` repeated, then a final
``Linear`` with bias.
"""

from __future__ import annotations

import math

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
    ``input_proj_layers``: φ's depth (``NUM_MLP_LAYERS_IN``): 2 = ``MLPHead(D→D→D·H)`` (the UCF
    and R3D/R(2+1)D K400 configs), 1 = one bias-free ``Linear`` (the Slow-R18 K400 config).
    """

    def __init__(self, dim: int = 256, num_slots: int = 4096, num_heads: int = 1, scale: float = 16.0,
                 input_proj: bool = True, output_proj: bool = False, residual: bool = False,
                 input_proj_layers: int = 2) -> None:
        super().__init__()
        if num_slots % num_heads:
            raise ValueError(f"num_slots ({num_slots}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.scale, self.residual = dim, num_heads, scale, residual
        if input_proj_layers not in (1, 2):
            raise ValueError(f"input_proj_layers must be 1 or 2, got {input_proj_layers}")
        if not input_proj:
            self.input_proj = None
        elif input_proj_layers == 1:
            self.input_proj = nn.Linear(dim, dim * num_heads, bias=False)
        else:
            self.input_proj = MLPHead(dim, dim, dim * num_heads)
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


# ---- BraVe (Recasens et al., ICCV 2021): one projector/predictor shared by every view ----


def _haiku_batch_norm(dim: int) -> nn.BatchNorm1d:
    # haiku BatchNorm(decay_rate=0.9, eps=1e-5) == torch momentum 0.1, eps 1e-5
    return nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1)


def _haiku_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """``nn.Linear`` with haiku's default init: truncated normal (±2σ), σ = 1/sqrt(fan_in); zero bias."""
    layer = nn.Linear(in_dim, out_dim)
    std = 1.0 / math.sqrt(in_dim)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
    return layer


class BraveProjector(nn.Module):
    """BraVe's projector (A6): ``D → 4096 → BN → ReLU → 128 → BN``; ``B×D`` → ``B×128``.

    ``forward(x, input_layer=None)``: ``input_layer`` replaces ``hidden`` (the first ``Linear``)
    for an embedding of another width (see :class:`BraveHeads`).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__()
        self.hidden = _haiku_linear(in_dim, hidden_dim)
        self.hidden_norm = _haiku_batch_norm(hidden_dim)
        self.out = _haiku_linear(hidden_dim, out_dim)
        self.out_norm = _haiku_batch_norm(out_dim)

    def forward(self, x: Tensor, input_layer: nn.Module | None = None) -> Tensor:
        x = (input_layer or self.hidden)(x)
        x = torch.relu(self.hidden_norm(x))
        return self.out_norm(self.out(x))


class BravePredictor(nn.Module):
    """BraVe's predictor (A6): ``128 → 4096 → BN → ReLU → 128``; ``B×128`` → ``B×128``."""

    def __init__(self, dim: int = 128, hidden_dim: int = 4096):
        super().__init__()
        self.hidden = _haiku_linear(dim, hidden_dim)
        self.hidden_norm = _haiku_batch_norm(hidden_dim)
        self.out = _haiku_linear(hidden_dim, dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden_norm(self.hidden(z))))


class ProjectAndPredict(nn.Module):
    """BraVe's head: :class:`BraveProjector` then :class:`BravePredictor`.

    ``forward(embedding B×D) -> (z B×128, h B×128)``. The released code shares *one* such head
    across all views (narrow video, broad video, audio, flow); embeddings of different widths
    therefore need the same ``D`` (2048 for TSM-50 ×1 and audio ResNet-50).

    Example:
        >>> z, h = ProjectAndPredict(16, hidden_dim=32, out_dim=8)(torch.randn(4, 16))
        >>> z.shape, h.shape
        (torch.Size([4, 8]), torch.Size([4, 8]))
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__()
        self.projector = BraveProjector(in_dim, hidden_dim, out_dim)
        self.predictor = BravePredictor(out_dim, hidden_dim)

    def forward(self, embedding: Tensor, input_layer: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        z = self.projector(embedding, input_layer)
        return z, self.predictor(z)


class BraveHeads(nn.Module):
    """The projection heads of all views: one shared head (faithful) or one per view.

    Args:
        view_dims: embedding width per view name, e.g. ``{"narrow": 2048, "broad_audio": 2048}``.
        shared: True (the released code): every view calls the same :class:`ProjectAndPredict`.
            False: one head per view (the paper's notation may suggest this).

    With ``shared=True`` and views of different widths (only TSM ×2 narrow + audio does this;
    the released ×2 V/AF checkpoint cannot have shared one D→4096 matrix either) each width
    gets its own first ``Linear`` into the 4096-d hidden layer (``input_layers[str(width)]``);
    everything after it is shared. BatchNorm statistics are computed per call, i.e. per view,
    as in the original.
    """

    def __init__(self, view_dims: dict[str, int], shared: bool = True, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__()
        self.shared = shared
        self.view_dims = dict(view_dims)
        if shared:
            dims = sorted(set(view_dims.values()))
            self.head = ProjectAndPredict(dims[0], hidden_dim, out_dim)
            # extra input layers for other widths (keyed by width), empty in every ×1 configuration
            self.input_layers = nn.ModuleDict({str(d): _haiku_linear(d, hidden_dim) for d in dims[1:]})
            self._first_dim = dims[0]
        else:
            self.heads = nn.ModuleDict({v: ProjectAndPredict(d, hidden_dim, out_dim) for v, d in view_dims.items()})

    def forward(self, view: str, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, h)`` for ``embedding`` (``B×D``) of ``view``."""
        if not self.shared:
            return self.heads[view](embedding)
        d = embedding.shape[-1]
        return self.head(embedding, None if d == self._first_dim else self.input_layers[str(d)])


# ---- GDT / STiCA (Patrick et al., ICCV 2021): mlp_v / mlp_a ----


class GDTHead(nn.Sequential):
    """GDT's projection head (``model.py:MLP``, B5): ``Dropout → Linear(no bias) → BN → ReLU → Dropout → Linear``.

    ``in_dim → hidden_dim → out_dim`` (GDT: 512 → 512 → 256, dropout 0.3); ``mlp=False`` is GDT's
    ``--use_mlp False``: one ``Linear(in_dim, out_dim)``. The output is not normalised (the methods
    L2-normalise it).

    Example:
        >>> GDTHead(512, 512, 256)(torch.randn(4, 512)).shape
        torch.Size([4, 256])
    """

    def __init__(self, in_dim: int = 512, hidden_dim: int = 512, out_dim: int = 256, dropout: float = 0.3,
                 mlp: bool = True):
        if mlp:
            layers = [nn.Dropout(dropout), nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                      nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)]
        else:
            layers = [nn.Linear(in_dim, out_dim)]
        super().__init__(*layers)
