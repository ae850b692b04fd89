"""GDT's text encoder (reference B8, ``model.py:Text_Encoder``): word vectors → Linear → ReLU → max over words.

Tokens ``B×L`` (0 pads, at most 20 words) → 300-d word vectors (frozen when they are the official
``word2vec.pth``; trained over the corpus vocabulary otherwise) → ``Linear(300, 2048)`` → ReLU → max over
the L positions → ``B×2048``. As in GDT the padding positions take part in the max (their vector is zero,
so they contribute ``relu(bias)``). A max over words ignores their order, so a time-reversed caption
(reversed word order, GDT's text reversal) has the same features as the caption itself: the reversal
hypotheses of video–text GDT therefore only change the video side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GDTTextEncoder(nn.Module):
    """``B×L`` int64 tokens → ``B×out_dim`` (see the module docstring).

    Args:
        num_embeddings: vocabulary size including the padding token 0.
        vectors: ``num_embeddings × word_dim`` pretrained vectors (frozen), or None (trained, padding row zero).
    """

    def __init__(self, num_embeddings: int, word_dim: int = 300, out_dim: int = 2048, vectors: Tensor | None = None):
        super().__init__()
        if vectors is not None:
            if tuple(vectors.shape) != (num_embeddings, word_dim):
                raise ValueError(f"word vectors of shape {tuple(vectors.shape)}, expected {(num_embeddings, word_dim)}")
            self.word_embd = nn.Embedding.from_pretrained(vectors.float(), freeze=True, padding_idx=0)
        else:
            self.word_embd = nn.Embedding(num_embeddings, word_dim, padding_idx=0)
        self.fc1 = nn.Linear(word_dim, out_dim)
        self.embed_dim = out_dim

    def forward(self, tokens: Tensor) -> Tensor:
        words = self.word_embd(tokens.long())
        return F.relu(self.fc1(words)).max(dim=1).values


def reverse_words(tokens: Tensor) -> Tensor:
    """Reverse each row's words, keeping the padding (zeros) at the end: ``[a, b, c, 0] → [c, b, a, 0]``."""
    length = (tokens != 0).sum(dim=1, keepdim=True)
    positions = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    source = torch.where(positions < length, length - 1 - positions, positions)
    return tokens.gather(1, source)


__all__ = ["GDTTextEncoder", "reverse_words"]
