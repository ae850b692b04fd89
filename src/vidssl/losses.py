"""Losses as pure functions, shared by the methods.

Every function takes tensors and returns a scalar tensor (or, for the memory
read-out and the centre update, the documented tensors). Nothing here holds
state: buffers such as the DINO centre live in the method and are passed in.

Shapes: ``B`` is the batch, ``D`` a feature width, ``N`` memory slots, ``K``
concept-dictionary size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL regression loss ``mean_b (2 - 2 cos(p_b, z_b))``; the target gets no gradient.

    ``prediction`` and ``target`` are ``B×D``; neither needs to be normalised.
    PySlowFast's ``sim_loss`` is ``-2 cos`` (``-mean cos / T`` with ``T = 0.5``):
    the same gradient, shifted by the constant 2 so that identical directions give 0
    and opposite directions give 4.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> float(byol_loss(p, p)), float(byol_loss(p, -3 * p))
        (0.0, 4.0)
    """
    p = F.normalize(prediction, dim=-1)
    z = F.normalize(target.detach(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def memory_addressing(query: Tensor, keys: Tensor, scale: float) -> Tensor:
    """Soft addressing of a key-value memory: ``softmax(scale · cos(q, k_s))`` over slots.

    ``query`` is ``B×H×D`` (H heads), ``keys`` is ``H×S×D`` (S slots per head); returns
    ``B×H×S`` weights that sum to 1 over the slots. FGKVMemPred's code uses ``scale = 16``
    (``MEMORY.RADIUS``); the paper says 64.

    Example:
        >>> w = memory_addressing(torch.randn(2, 1, 8), torch.randn(1, 5, 8), scale=16.0)
        >>> w.shape, bool(torch.allclose(w.sum(-1), torch.ones(2, 1)))
        (torch.Size([2, 1, 5]), True)
    """
    cos = torch.einsum("bhd,hsd->bhs", F.normalize(query, dim=-1), F.normalize(keys, dim=-1))
    return torch.softmax(scale * cos, dim=-1)


def memory_readout(weights: Tensor, values: Tensor) -> Tensor:
    """Read a key-value memory: ``Σ_s A_s · V_s``; ``weights`` ``B×H×S``, ``values`` ``H×S×D`` → ``B×(H·D)``.

    Example:
        >>> values = torch.eye(3).unsqueeze(0)            # 1 head, 3 slots, D = 3
        >>> memory_readout(torch.tensor([[[0.0, 1.0, 0.0]]]), values)
        tensor([[0., 1., 0.]])
    """
    out = torch.einsum("bhs,hsd->bhd", weights, values)
    return out.flatten(1)


def reconstruction_loss(prediction: Tensor, target: Tensor, kind: Literal["cosine", "l2"] = "cosine") -> Tensor:
    """Reconstruction of a (detached) feature vector from a concept code; ``B×D`` inputs.

    ``"cosine"`` is FGKVMemPred's code: ``Σ_b |1 - cos(p_b, t_b)| / (B·D)`` (its
    ``AVERAGE_DIM: -1`` divides by every element, not by B, so the value is small).
    ``"l2"`` is the paper's Eq. 6: mean over the batch of ``‖p_b - t_b‖²``.

    Example:
        >>> t = torch.randn(4, 8)
        >>> float(reconstruction_loss(3 * t, t)) < 1e-6, float(reconstruction_loss(t, t, "l2"))
        (True, 0.0)
    """
    target = target.detach()
    if kind == "cosine":
        cos = F.cosine_similarity(prediction, target, dim=-1)
        return (1 - cos).abs().sum() / target.numel()
    if kind == "l2":
        return (prediction - target).pow(2).sum(dim=-1).mean()
    raise ValueError(f"unknown reconstruction loss '{kind}' (expected 'cosine' or 'l2')")


def dino_alignment_loss(
    student_logits: Tensor, teacher_logits: Tensor, center: Tensor, student_temp: float = 0.05, teacher_temp: float = 0.05
) -> Tensor:
    """DINO-style cross-entropy ``mean_b Σ_k -P_t log P_s`` between concept codes (``B×K`` each).

    Teacher: ``softmax((q_t - c) / τ_t)``, detached (no gradient reaches the teacher codes).
    Student: ``log_softmax(q_s / τ_s)``. ``center`` is ``1×K`` (see :func:`update_center`).

    Example:
        >>> q = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
        >>> float(dino_alignment_loss(q, q, torch.zeros(1, 2))) < 1e-6
        True
    """
    teacher = torch.softmax((teacher_logits.detach() - center) / teacher_temp, dim=-1)
    student = torch.log_softmax(student_logits / student_temp, dim=-1)
    return -(teacher * student).sum(dim=-1).mean()


@torch.no_grad()
def update_center(
    center: Tensor, teacher_logits: Tensor, momentum: float = 0.9, sync: bool = False, world_size_quirk: bool = False
) -> Tensor:
    """New DINO centre ``m·c + (1 - m)·mean_b(q_t)``; ``center`` ``1×K``, ``teacher_logits`` ``B×K``.

    With ``sync`` the batch mean is taken over every process (sum and count are
    all-reduced), so all processes keep the same centre. FGKVMemPred's code averages
    the all-reduced sum and then divides by ``B_local·W`` again, i.e. uses
    ``global mean / W``; ``world_size_quirk=True`` reproduces that (it only differs
    when W > 1). Returns the new centre (the caller stores it in its buffer).

    Example:
        >>> update_center(torch.zeros(1, 2), torch.tensor([[1.0, 3.0], [3.0, 5.0]]))
        tensor([[0.2000, 0.4000]])
    """
    total = teacher_logits.sum(dim=0, keepdim=True).float()
    count = torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device)
    world = 1
    if sync and torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    batch_center = total / count
    if world_size_quirk:
        batch_center = batch_center / world
    return center * momentum + batch_center.to(center.dtype) * (1 - momentum)


def info_nce_loss(query: Tensor, keys: Tensor, positive_index: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE: cross-entropy of ``cos(q_b, k_j)/τ`` over all keys, the positive at ``positive_index[b]``.

    ``query`` ``B×D``; ``keys`` ``M×D`` (e.g. gathered from every process so the other
    samples act as negatives). Used by the distributed tests of the gather helper and by
    contrastive methods.

    Example:
        >>> q = torch.eye(3)
        >>> float(info_nce_loss(q, q, torch.arange(3), temperature=0.01)) < 1e-6
        True
    """
    logits = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    return F.cross_entropy(logits, positive_index)
