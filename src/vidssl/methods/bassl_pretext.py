"""BaSSL's pretext tasks as pure functions (reference §1.7-1.9): DTW pseudo-boundary, NCE, shot-scene
matching (SSM), masked shot modelling (MSM), pseudo-boundary prediction (PP), contextual group
matching (CGM).

Shapes: ``B`` windows of ``S`` dense shots (BaSSL: 17); sparse shots = the window's first and last
shot; ``s_emb`` ``B×2×E`` and ``d_emb`` ``B×S×E`` are L2-normalised head embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.distributed import dist_ready, gather_with_grad
from vidssl.methods.guards import require

__all__ = ["dtw_split", "nce_loss", "shot_scene_matching_loss", "masked_shot_loss", "msm_mask",
           "boundary_prediction_loss", "group_matching_loss", "sample_excluding"]


@torch.no_grad()
def dtw_split(cost: Tensor) -> Tensor:
    """Pseudo-boundary of each window: the last dense shot aligned to the first sparse shot.

    ``cost`` is ``B×2×S`` (BaSSL: ``1 - s_emb @ d_embᵀ``). BaSSL runs tslearn's DTW (steps (1,0),
    (0,1), (1,1), no window) per sample in a Python loop on the CPU (reference §1.15 quirk 8). With
    two rows a monotone path from (0,0) to (1,S-1) is: row 0 over dense shots ``0..j``, then row 1
    over ``j+1..S-1`` (diagonal step) or ``j..S-1`` (vertical step, which costs ``cost[1,j] >= 0``
    more and so never beats the diagonal). Its cost is ``prefix0[j] + suffix1[j+1]``, and ``j = S-1``
    (all of row 0, then a vertical step) never beats ``j = S-2``. So the optimal path is the split
    ``j* = argmin_j prefix0[j] + suffix1[j+1]``, ``j ∈ [0, S-2]``, computed for the whole batch at
    once on the device. Ties go to the earliest split. Returns ``j*`` (int64 ``B``); the two groups
    (BaSSL's pseudo-scenes) are ``[0..j*]`` and ``[j*+1..S-1]``.
    """
    if cost.dim() != 3 or cost.shape[1] != 2 or cost.shape[2] < 2:
        raise ValueError(f"dtw_split takes a B×2×S cost (S >= 2: two sparse shots against S dense shots), "
                         f"got {tuple(cost.shape)}")
    prefix0 = cost[:, 0].cumsum(dim=1)[:, :-1]  # row 0 over 0..j, j = 0..S-2
    suffix1 = cost[:, 1].flip(1).cumsum(dim=1).flip(1)[:, 1:]  # row 1 over j+1..S-1
    return (prefix0 + suffix1).argmin(dim=1)


def _rank() -> int:
    return torch.distributed.get_rank() if dist_ready() else 0


def nce_loss(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric NT-Xent (SimCLR; BaSSL's ``_compute_nce_loss``, τ 0.1) with negatives gathered from
    every process.

    ``a`` and ``b`` are ``B×E`` L2-normalised; row i of ``a`` and row i of ``b`` are positives. Every
    one of the 2B local rows is an anchor; its negatives are all 2·B·W gathered rows except itself and
    its partner. The masks are derived from the actual tensor sizes (BaSSL precomputes them from the
    configured batch, quirk 6).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"nce_loss takes two B×E batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    batch = a.shape[0]
    everything_a, everything_b = gather_with_grad(a), gather_with_grad(b)
    total = everything_a.shape[0]
    everything = torch.cat([everything_a, everything_b])  # 2·B·W × E
    local = torch.cat([a, b])  # 2B × E
    logits = local @ everything.t() / temperature
    own = _rank() * batch + torch.arange(batch, device=a.device)
    self_index = torch.cat([own, own + total])
    partner = torch.cat([own + total, own])
    logits = logits.masked_fill(F.one_hot(self_index, 2 * total).bool(), float("-inf"))
    return F.cross_entropy(logits, partner)


def shot_scene_matching_loss(s_emb: Tensor, d_emb: Tensor, split: Tensor, temperature: float = 0.1) -> Tensor:
    """SSM: each sparse shot against the mean of the dense shots DTW aligned to it (re-normalised),
    NCE over the global batch, averaged over the two sparse shots. ``s_emb`` ``B×2×E``, ``d_emb``
    ``B×S×E``, ``split`` ``B`` (from :func:`dtw_split`). Gradients reach both branches."""
    positions = torch.arange(d_emb.shape[1], device=d_emb.device)[None, :]
    first = (positions <= split[:, None]).to(d_emb.dtype)  # B×S
    losses = []
    for i, members in enumerate((first, 1 - first)):
        scene = (d_emb * members[..., None]).sum(1) / members.sum(1, keepdim=True)
        losses.append(nce_loss(s_emb[:, i], F.normalize(scene, dim=-1), temperature))
    return torch.stack(losses).mean()


def msm_mask(batch: int, shots: int, p: float = 0.15, device=None, generator=None) -> Tensor:
    """BaSSL's masked-shot mask ``B×S`` bool: each shot with probability ``p``, at least one per window."""
    mask = torch.rand(batch, shots, device=device, generator=generator) < p
    forced = torch.randint(0, shots, (batch,), device=device, generator=generator)
    empty = ~mask.any(dim=1, keepdim=True)
    # elementwise, not `mask[empty, forced[empty]] = True`: a boolean index would sync the GPU
    return mask | (empty & (torch.arange(shots, device=mask.device)[None, :] == forced[:, None]))


def masked_shot_loss(predicted: Tensor, features: Tensor, mask: Tensor) -> Tensor:
    """MSM: MSE (mean over elements) between the predicted features of the masked shots and the
    DETACHED shot-encoder features. ``predicted`` and ``features`` ``B×S×D``, ``mask`` ``B×S``.

    Computed as a masked sum (equal to ``F.mse_loss(predicted[mask], features[mask])``) so that no
    boolean index syncs the GPU."""
    weight = mask.to(predicted.dtype).unsqueeze(-1)
    squared = (predicted - features.detach()).square() * weight
    return squared.sum() / (weight.sum() * predicted.shape[-1]).clamp_min(1)


def sample_excluding(low: Tensor, high: Tensor, exclude: Tensor | int, generator=None) -> Tensor:
    """One integer per row, uniform over ``[low, high]`` (inclusive) minus ``exclude`` (when it lies
    inside); every range must keep at least one value."""
    low, high = low.long(), high.long()
    if isinstance(exclude, Tensor):
        exclude = exclude.to(low.device).long().expand_as(low)
    else:  # a Python int: filled on the device (torch.as_tensor would copy it from the host and sync)
        exclude = torch.full_like(low, int(exclude))
    inside = (exclude >= low) & (exclude <= high)
    count = high - low + 1 - inside.long()
    require((count >= 1).all(), "sample_excluding: a range has no value left to draw")
    draw = (torch.rand(low.shape, device=low.device, generator=generator) * count).long().clamp_max(count - 1)
    value = low + draw
    return value + (inside & (value >= exclude)).long()


def boundary_prediction_loss(hidden: Tensor, split: Tensor, head, generator=None) -> Tensor:
    """PP: the pseudo-boundary shot's token is class 1, one other shot of the window (uniform) class 0;
    ``head`` maps the UN-normalised tokens to 2 logits. ``hidden`` ``B×S×H`` (CLS dropped)."""
    batch, shots = hidden.shape[:2]
    rows = torch.arange(batch, device=hidden.device)
    zero = torch.zeros_like(split)
    negative = sample_excluding(zero, zero + shots - 1, split, generator)
    logits = head(torch.cat([hidden[rows, split], hidden[rows, negative]]))
    labels = torch.cat([torch.ones_like(split), torch.zeros_like(split)])
    return F.cross_entropy(logits, labels)


def group_matching_loss(hidden: Tensor, split: Tensor, head, generator=None) -> Tensor:
    """CGM: the centre shot against one shot of its own pseudo-scene (class 1) and one of the other
    (class 0), the centre excluded from both; ``head`` maps ``cat(centre, other)`` of L2-normalised
    tokens to 2 logits. ``hidden`` ``B×S×H`` (CLS dropped), ``split`` ``B``."""
    batch, shots = hidden.shape[:2]
    centre = shots // 2
    rows = torch.arange(batch, device=hidden.device)
    tokens = F.normalize(hidden, dim=-1)
    zero = torch.zeros_like(split)
    in_first = sample_excluding(zero, split, centre, generator)
    in_second = sample_excluding(split + 1, zero + shots - 1, centre, generator)
    centre_in_first = centre <= split
    same = torch.where(centre_in_first, in_first, in_second)
    other = torch.where(centre_in_first, in_second, in_first)
    c = tokens[:, centre]
    logits = head(torch.cat([torch.cat([c, tokens[rows, same]], -1), torch.cat([c, tokens[rows, other]], -1)]))
    labels = torch.cat([torch.ones_like(split), torch.zeros_like(split)])
    return F.cross_entropy(logits, labels)
