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
    count = total.new_full((), float(teacher_logits.shape[0]))  # a fill on the device, no host copy
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


# ---- BraVe (Recasens et al., ICCV 2021) ----


def safe_normalize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``x / max(||x||, eps)`` along the last dim, with a finite gradient at ``x = 0``.

    BraVe's ``_safe_norm``: a norm at or below ``eps`` is replaced by ``eps``. The square root
    is taken of a clamped squared norm so that the gradient never divides by zero.
    """
    sq = (x * x).sum(dim=-1, keepdim=True)
    return x * torch.rsqrt(sq.clamp_min(eps * eps))


def regression_loss(prediction: Tensor, target: Tensor, eps: float = 1e-5, mask: Tensor | None = None) -> Tensor:
    """BraVe's regression term: ``mean_batch 0.5 · ||n(prediction) − n(sg(target))||²``.

    Args:
        prediction: ``B×D`` predictor output of one view.
        target: ``B×D`` projection of the other view; gradients are stopped here.
        mask: optional bool ``B``: average over these samples only (e.g. clips whose audio is
            real); a mask with no sample gives 0 (with a zero gradient).

    Returns a scalar; for non-zero vectors it equals ``mean(1 − cos(prediction, target))``, so
    it lies in [0, 2], is ≈1 for unrelated random vectors (BraVe's init check) and 0 when
    the two point the same way. ``regression_loss([1,2,3], [0,0,0]) == 0.5`` (A7).
    """
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f"regression_loss expects two B×D tensors of the same shape, got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}"
        )
    diff = safe_normalize(prediction, eps) - safe_normalize(target.detach(), eps)
    per_sample = 0.5 * (diff * diff).sum(dim=-1)
    if mask is None:
        return per_sample.mean()
    weights = mask.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp_min(1.0)


def brave_loss(narrow: tuple[Tensor, Tensor], broads: dict[str, tuple[Tensor, Tensor]],
               masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Symmetric BraVe loss between the narrow view and every broad view.

    Args:
        narrow: ``(z, h)`` of the narrow view: projection and prediction, both ``B×128``.
        broads: ``(z, h)`` per broad view name (e.g. ``{"broad_audio": (z, h)}``).
        masks: optional bool ``B`` per broad view: the samples whose view holds real data (an
            audio view without a track is left out of its two terms, not regressed as silence).

    Returns ``{"loss": mean of all 2·len(broads) terms, "loss_<view>_to_narrow": …,
    "loss_narrow_to_<view>": …}``. With one broad view this is BraVe's
    ``mean([reg(h_b, sg(z_n)), reg(h_n, sg(z_b))])``.
    """
    if not broads:
        raise ValueError("brave_loss needs at least one broad view")
    masks = masks or {}
    z_n, h_n = narrow
    out: dict[str, Tensor] = {}
    terms = []
    for name, (z_b, h_b) in broads.items():
        mask = masks.get(name)
        b2n = regression_loss(h_b, z_n, mask=mask)
        n2b = regression_loss(h_n, z_b, mask=mask)
        out[f"loss_{name}_to_narrow"] = b2n
        out[f"loss_narrow_to_{name}"] = n2b
        terms += [b2n, n2b]
    out["loss"] = torch.stack(terms).mean()
    return out


# ---- GDT / STiCA (Patrick et al., ICCV 2021): NCE over an explicit set of keys ----


def masked_nce_rows(logits: Tensor, positive: Tensor, allowed: Tensor) -> Tensor:
    """Per-row InfoNCE over the keys a mask allows: ``-log softmax(logits[b, allowed[b]])`` at ``positive[b]``.

    ``logits`` ``B×M`` (already divided by the temperature), ``positive`` ``B`` (column of each
    row's positive key, which ``allowed`` must include), ``allowed`` bool ``B×M`` (the positive and
    the negatives of each row). Returns the ``B`` row losses. GDT's hypotheses differ only in which
    keys each row may see (:mod:`vidssl.methods.gdt_nce`).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 5.0]])
        >>> row = masked_nce_rows(logits, torch.tensor([0]), torch.tensor([[True, True, False]]))
        >>> round(float(row), 4) == round(float(torch.log(1 + torch.exp(torch.tensor(-2.0)))), 4)
        True
    """
    masked = logits.masked_fill(~allowed, float("-inf"))
    return torch.logsumexp(masked, dim=1) - logits.gather(1, positive[:, None]).squeeze(1)
