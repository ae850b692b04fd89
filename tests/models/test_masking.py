"""BEVT's masks (reference §3.6): BEiT block-wise image masks and wrap-around video tubes, batched."""

from __future__ import annotations

import math
import random

import pytest
import torch

from vidssl.models.masking import block_masks, tube_masks, upsample_mask


def beit_reference_mask(rng: random.Random, size: int = 14, num_masked: int = 98, min_cells: int = 16,
                        aspect: float = 0.3) -> list[list[int]]:
    """BEiT's ``MaskingGenerator`` written out per sample in Python (the algorithm the batched draw vectorises)."""
    mask = [[0] * size for _ in range(size)]
    log_aspect = (math.log(aspect), math.log(1 / aspect))
    count = 0
    while count < num_masked:
        budget = num_masked - count
        delta = 0
        for _ in range(10):
            area = rng.uniform(min_cells, budget)
            ratio = math.exp(rng.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if w < size and h < size:
                top, left = rng.randint(0, size - h), rng.randint(0, size - w)
                covered = sum(mask[i][j] for i in range(top, top + h) for j in range(left, left + w))
                if 0 < h * w - covered <= budget:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if not mask[i][j]:
                                mask[i][j] = 1
                                delta += 1
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return mask


def test_block_masks_cover_at_most_98_of_196_cells_like_beit():
    masks = block_masks(2000, 14, 14, 98, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (2000, 14, 14) and masks.dtype == torch.bool
    counts = masks.flatten(1).sum(1).float()
    assert int(counts.max()) == 98  # never more than asked
    rng = random.Random(0)
    reference = torch.tensor([sum(map(sum, beit_reference_mask(rng))) for _ in range(2000)], dtype=torch.float)
    # same process: the same distribution of masked-cell counts (mean and share of exact 98s)
    assert float(counts.mean()) == pytest.approx(float(reference.mean()), abs=0.5)
    assert float((counts == 98).float().mean()) == pytest.approx(float((reference == 98).float().mean()), abs=0.06)
    # blocks, not scattered cells: most masked cells have a masked 4-neighbour
    m = masks.float()
    neighbours = torch.zeros_like(m)
    neighbours[:, 1:] += m[:, :-1]
    neighbours[:, :-1] += m[:, 1:]
    neighbours[:, :, 1:] += m[:, :, :-1]
    neighbours[:, :, :-1] += m[:, :, 1:]
    assert ((neighbours > 0) & masks).sum() / masks.sum() > 0.95


def test_block_masks_differ_per_sample_and_follow_the_generator():
    a = block_masks(8, 14, 14, 98, generator=torch.Generator().manual_seed(1))
    b = block_masks(8, 14, 14, 98, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert len({tuple(m.flatten().tolist()) for m in a}) == 8


def test_tube_masks_repeat_one_2d_mask_over_a_wrapping_span_of_4_to_8_of_8():
    masks = tube_masks(3000, 8, 14, 14, 98, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (3000, 8, 14, 14)
    used = masks.flatten(2).any(-1)  # B×T frames in the span
    spans = used.sum(1)
    assert int(spans.min()) == 4 and int(spans.max()) == 8
    assert set(torch.bincount(spans)[4:].tolist()) and all(c > 400 for c in torch.bincount(spans)[4:].tolist())
    # one 2-D mask copied into every frame of the span
    for clip, frames in zip(masks[:50], used[:50]):
        first = clip[frames][0]
        assert all(torch.equal(first, clip[t]) for t in range(8) if frames[t])
    # contiguous modulo 8, and some spans wrap past the last temporal cell
    wraps = 0
    for frames in used.tolist():
        starts = [t for t in range(8) if frames[t] and not frames[(t - 1) % 8]]
        assert len(starts) == 1 or all(frames)
        wraps += bool(frames[0] and frames[7] and not all(frames))
    assert wraps > 100
    # ≈ 25–50 % of the space-time cells (§3.6)
    assert 0.25 < masks.float().mean() < 0.5


def test_tiny_grids_work():
    """The tiny presets' 4×4 grid with 8 masked cells and 4 temporal cells (spans 2–4)."""
    masks = tube_masks(64, 4, 4, 4, 8, min_cells=2, generator=torch.Generator().manual_seed(0))
    assert masks.flatten(2).any(-1).sum(1).min() >= 2
    assert 0 < masks[:, 0].flatten(1).sum(1).max() <= 8


def test_upsampling_a_mask_repeats_each_cell():
    mask = torch.tensor([[[True, False], [False, True]]])
    up = upsample_mask(mask, (4, 4))
    assert up.sum() == 8 and bool(up[0, :2, :2].all()) and not bool(up[0, :2, 2:].any())
    video = tube_masks(2, 8, 14, 14, 98, generator=torch.Generator().manual_seed(0))
    assert upsample_mask(video, (16, 14, 14)).shape == (2, 16, 14, 14)  # BEVT's loss mask: ×2 in time


def test_bad_mask_arguments_are_refused():
    with pytest.raises(ValueError, match="num_masked"):
        block_masks(2, 14, 14, 300)
    with pytest.raises(ValueError, match="min_fraction"):
        tube_masks(2, 8, 14, 14, 98, min_fraction=0.0)
    with pytest.raises(ValueError, match="multiple of the grid"):
        upsample_mask(torch.zeros(1, 3, 3, dtype=torch.bool), (4, 4))
