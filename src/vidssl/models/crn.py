"""BaSSL's contextual relation network (CRN): a small BERT-style transformer over a window of shots.

``bassl/model/crn/trn.py`` (reference §1.4) builds it from Hugging Face's ``BertEncoder``; this is
the same computation written out in PyTorch (no ``transformers`` dependency):

1. masked shots (masked shot modelling) are replaced by one learned vector in the input space
   (BaSSL's ``nn.Embedding(2, D, padding_idx=0)``, of which only row 1 is ever used);
2. a CLS token = the mean of the (masked) shot features is prepended (reference §1.15 quirk 7: the
   mean includes the mask vectors, as in the original);
3. ``Linear(D → hidden)`` + learned absolute positions (``S + 1`` of them), LayerNorm (eps 1e-12),
   dropout;
4. ``num_layers`` post-LN BERT layers (self-attention with attention dropout, dense, dropout, add &
   LayerNorm; ``Linear(hidden → 4·hidden)``, exact GELU, ``Linear``, dropout, add & LayerNorm), full
   attention.

Output: ``(tokens B×(S+1)×hidden, pooled B×hidden)``, pooled = the centre shot's token
(``tokens[:, 1 + S // 2]``, BaSSL's ``pooling_method: center``).

BaSSL: ``input_dim=2048, hidden_dim=768, num_layers=2, num_heads=8, intermediate_dim=3072,
num_shots=17``. :mod:`vidssl.models.convert_bassl` maps the official Hugging Face key names onto
this module's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContextualRelationNetwork", "BertLayer", "MaskedShotHead"]


class BertLayer(nn.Module):
    """One post-LN BERT layer (``BertLayer`` of ``transformers``), ``B×L×H`` → ``B×L×H``."""

    def __init__(self, hidden_dim: int, num_heads: int, intermediate_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, eps: float = 1e-12):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_dim, hidden_dim)
        self.key = nn.Linear(hidden_dim, hidden_dim)
        self.value = nn.Linear(hidden_dim, hidden_dim)
        self.attention_out = nn.Linear(hidden_dim, hidden_dim)
        self.attention_norm = nn.LayerNorm(hidden_dim, eps=eps)
        self.intermediate = nn.Linear(hidden_dim, intermediate_dim)
        self.output = nn.Linear(intermediate_dim, hidden_dim)
        self.output_norm = nn.LayerNorm(hidden_dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = attention_dropout

    def _heads(self, x: Tensor) -> Tensor:
        b, length, h = x.shape
        return x.view(b, length, self.num_heads, h // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attention_dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape_as(x)
        x = self.attention_norm(x + self.dropout(self.attention_out(attended)))
        return self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


class ContextualRelationNetwork(nn.Module):
    """BaSSL's CRN (see the module docstring). ``forward(shots B×S×D, mask B×S bool | None)``."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 768, num_layers: int = 2, num_heads: int = 8,
                 intermediate_dim: int = 3072, num_shots: int = 17, dropout: float = 0.1):
        super().__init__()
        self.input_dim, self.hidden_dim, self.num_shots = int(input_dim), int(hidden_dim), int(num_shots)
        # constructor arguments but input_dim (saved with scene models and converted checkpoints)
        self.config = {"hidden_dim": int(hidden_dim), "num_layers": int(num_layers), "num_heads": int(num_heads),
                       "intermediate_dim": int(intermediate_dim), "num_shots": int(num_shots), "dropout": float(dropout)}
        # the learned vector that replaces a masked shot (BaSSL's mask_embedding row 1; N(0, 1) init as nn.Embedding)
        self.mask_embedding = nn.Parameter(torch.randn(input_dim))
        self.shot_projection = nn.Linear(input_dim, hidden_dim)
        self.position_embedding = nn.Embedding(num_shots + 1, hidden_dim)  # +1: the CLS token
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(BertLayer(hidden_dim, num_heads, intermediate_dim, dropout, dropout)
                                    for _ in range(num_layers))

    @property
    def embed_dim(self) -> int:
        return self.hidden_dim

    def forward(self, shots: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if shots.dim() != 3 or shots.shape[-1] != self.input_dim:
            raise ValueError(f"the CRN takes shot features B×S×{self.input_dim}, got {tuple(shots.shape)}")
        if shots.shape[1] > self.num_shots:
            raise ValueError(f"the CRN was built for windows of up to {self.num_shots} shots, got {shots.shape[1]}")
        if mask is not None:
            m = mask.to(shots.dtype).unsqueeze(-1)
            shots = shots * (1 - m) + m * self.mask_embedding.to(shots.dtype)
        tokens = torch.cat([shots.mean(dim=1, keepdim=True), shots], dim=1)
        positions = self.position_embedding.weight[: tokens.shape[1]]
        x = self.dropout(self.norm(self.shot_projection(tokens) + positions))
        for layer in self.layers:
            x = layer(x)
        return x, x[:, 1 + (tokens.shape[1] - 1) // 2]


class MaskedShotHead(nn.Module):
    """BaSSL's masked-shot-modelling head (``BertOnlyMLMHead`` with ``vocab_size = input_dim``):
    ``Linear(h, h)``, GELU, LayerNorm(eps 1e-12), ``Linear(h, D)`` (+ bias); regresses shot features."""

    def __init__(self, hidden_dim: int, output_dim: int):
        super().__init__()
        self.dense = nn.Linear(hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.decoder = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(x))))
