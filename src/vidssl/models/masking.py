"""Masks for masked image / video modeling, drawn for a whole batch at once.

The draws run where the ``generator`` lives — on the host (CPU) when none is given — and the masks
are then copied to ``device`` without making the host wait (pinned, non-blocking). The placement
loop below is hundreds of tiny tensor ops: on a GPU each is a kernel launch, and measured on one
H200 a batch-8, 14×14 tube mask took 18.3 ms per step drawn on the GPU and 5.1 ms drawn on the CPU
(copy included; ``benchmarks/bench_bevt_swin.py``), so the host draws and the GPU never waits.

- :func:`block_masks`: BEiT's block-wise masks (BEVT ``Masked2DPositionGenerate``; reference §3.6).
  Rectangles of area U(min_cells, remaining) and aspect exp(U(log r, log 1/r)) are placed at random;
  a placement counts only the cells it newly covers and is kept when that number is in
  (0, remaining]. A sample stops when ``num_masked`` cells are covered or ``attempts`` placements in
  a row were rejected (BEiT's ``_mask`` tries 10 times per call and the generator stops when a call
  places nothing). BEiT draws each sample with a Python loop; here every sample of the batch takes a
  placement step at once (tensor ops on ``B×H×W``), so the draw is the same process, vectorised.
- :func:`tube_masks`: BEVT's video masks (``MaskedPositionGenerate``): ONE block-wise 2-D mask per
  clip, copied into a random contiguous span of L ∈ [⌊min_fraction·T⌋, T] temporal cells that starts
  at t0 ∈ [0, T) and wraps around modulo T (a partial "tube", not a full-length one).
- :func:`upsample_mask`: nearest upsampling of a mask to a finer grid (mask units → patch tokens,
  or BEVT's 8 temporal mask cells → 16 output frames).

All functions return ``bool`` tensors; ``True`` = masked.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vidssl.data.transforms.core import to_device_async


def _uniform(shape: tuple[int, ...], low: Tensor | float, high: Tensor | float, device: torch.device,
             generator: torch.Generator | None) -> Tensor:
    u = torch.rand(shape, device=device, generator=generator)
    return low + (high - low) * u


def block_masks(batch: int, height: int, width: int, num_masked: int, *, min_cells: int = 16,
                max_cells: int | None = None, aspect: float = 0.3, attempts: int = 10,
                max_steps: int | None = None, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> Tensor:
    """BEiT block-wise masks ``B×H×W`` (bool), about ``num_masked`` cells each (never more).

    Args:
        num_masked: cells to mask per sample (BEVT: 98 of 14×14).
        min_cells: smallest rectangle area drawn (BEVT: 16).
        max_cells: largest area of one rectangle (BEiT's ``max_num_patches``; None = ``num_masked``).
        aspect: aspect ratios are drawn log-uniformly in [aspect, 1/aspect] (BEiT: 0.3).
        attempts: rejected placements in a row after which a sample stops (BEiT: 10).
        max_steps: cap on placement steps for the whole batch (None: enough for any realistic draw;
            the loop also stops once every sample is done, checked every ``attempts`` steps).
        device: where the returned mask lives (drawn on the generator's device, else on the CPU).

    Example:
        >>> m = block_masks(4, 14, 14, 98, generator=torch.Generator().manual_seed(0))
        >>> m.shape, bool((m.flatten(1).sum(1) <= 98).all())
        (torch.Size([4, 14, 14]), True)
    """
    if not 0 < num_masked <= height * width:
        raise ValueError(f"num_masked must be in [1, {height * width}] for a {height}×{width} grid, got {num_masked}")
    if min_cells < 1 or not 0 < aspect <= 1 or attempts < 1:
        raise ValueError(f"need min_cells >= 1, 0 < aspect <= 1 and attempts >= 1, got {min_cells}, {aspect}, {attempts}")
    target, device = torch.device(device), generator.device if generator is not None else torch.device("cpu")
    max_cells = num_masked if max_cells is None else max_cells
    log_aspect = (math.log(aspect), math.log(1 / aspect))
    mask = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    failures = torch.zeros(batch, dtype=torch.long, device=device)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    max_steps = max_steps if max_steps is not None else attempts * (num_masked + 4)
    for step in range(max_steps):
        active = (count < num_masked) & (failures < attempts)
        if step % attempts == 0 and not bool(active.any()):  # one host sync every `attempts` steps
            break
        budget = torch.clamp(num_masked - count, max=max_cells)  # BEiT's max_mask_patches
        area = _uniform((batch,), float(min_cells), budget.float(), device, generator)
        ratio = torch.exp(_uniform((batch,), log_aspect[0], log_aspect[1], device, generator))
        h = torch.round(torch.sqrt(area * ratio)).long()
        w = torch.round(torch.sqrt(area / ratio)).long()
        fits = (h < height) & (w < width) & (h > 0) & (w > 0)
        top = (torch.rand(batch, device=device, generator=generator) * (height - h + 1).clamp_min(1)).long()
        left = (torch.rand(batch, device=device, generator=generator) * (width - w + 1).clamp_min(1)).long()
        box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
               & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
        new = (box & ~mask).flatten(1).sum(1)
        accept = active & fits & (new > 0) & (new <= budget)
        mask |= box & accept.view(-1, 1, 1)
        count += torch.where(accept, new, torch.zeros_like(new))
        failures = torch.where(accept, torch.zeros_like(failures), failures + active.long())
    return to_device_async(mask, target)


def tube_masks(batch: int, frames: int, height: int, width: int, num_masked: int, *,
               min_fraction: float = 0.5, max_fraction: float = 1.0, min_cells: int = 16, aspect: float = 0.3,
               device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
    """BEVT's video masks ``B×T×H×W`` (bool): one block-wise mask per clip over a wrap-around span.

    The span length is L ∈ [⌊min_fraction·T⌋, ⌊max_fraction·T⌋] (uniform integers; BEVT: 4–8 of 8)
    and its start t0 ∈ [0, T); frame t is masked where ``(t - t0) mod T < L``.

    Example:
        >>> m = tube_masks(2, 8, 14, 14, 98, generator=torch.Generator().manual_seed(0))
        >>> m.shape
        torch.Size([2, 8, 14, 14])
    """
    if not 0 < min_fraction <= max_fraction <= 1:
        raise ValueError(f"need 0 < min_fraction <= max_fraction <= 1, got {min_fraction}, {max_fraction}")
    target, device = torch.device(device), generator.device if generator is not None else torch.device("cpu")
    low, high = max(1, int(min_fraction * frames)), max(1, int(max_fraction * frames))
    spatial = block_masks(batch, height, width, num_masked, min_cells=min_cells, aspect=aspect, device=device,
                          generator=generator)
    start = torch.randint(0, frames, (batch,), device=device, generator=generator)
    length = torch.randint(low, high + 1, (batch,), device=device, generator=generator)
    t = torch.arange(frames, device=device).view(1, frames)
    in_span = (t - start.view(-1, 1)).remainder(frames) < length.view(-1, 1)  # B×T
    return to_device_async(spatial.unsqueeze(1) & in_span.view(batch, frames, 1, 1), target)


def upsample_mask(mask: Tensor, size: tuple[int, ...]) -> Tensor:
    """Nearest upsampling of a bool mask ``B×g1×…`` to ``B×size`` (each size a multiple of the grid).

    Example:
        >>> upsample_mask(torch.tensor([[[True, False]]]), (2, 4)).int().tolist()
        [[[1, 1, 0, 0], [1, 1, 0, 0]]]
    """
    grid = tuple(mask.shape[1:])
    if len(grid) != len(size) or any(s % g for s, g in zip(size, grid)):
        raise ValueError(f"a {grid} mask cannot be upsampled to {tuple(size)}: each size must be a multiple of the grid")
    out = mask
    for axis, (s, g) in enumerate(zip(size, grid), start=1):
        if s != g:
            out = out.repeat_interleave(s // g, dim=axis)
    return out
