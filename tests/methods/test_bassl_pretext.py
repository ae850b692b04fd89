"""BaSSL's pretext tasks: the batched DTW split against a brute-force DTW search, and each loss's properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidssl.methods.bassl_pretext import (
    boundary_prediction_loss,
    dtw_split,
    group_matching_loss,
    masked_shot_loss,
    msm_mask,
    nce_loss,
    sample_excluding,
    shot_scene_matching_loss,
)


def all_dtw_paths(rows: int, cols: int):
    """Every monotone path from (0,0) to (rows-1, cols-1) with steps (1,0), (0,1), (1,1)."""
    def walk(i, j):
        if (i, j) == (rows - 1, cols - 1):
            yield [(i, j)]
            return
        for di, dj in ((1, 1), (1, 0), (0, 1)):
            if i + di < rows and j + dj < cols:
                for rest in walk(i + di, j + dj):
                    yield [(i, j)] + rest
    yield from walk(0, 0)


def brute_force_split(cost: torch.Tensor) -> tuple[float, set[int]]:
    """Minimum DTW cost of one 2×S matrix and every boundary (last column aligned to row 0) of an optimal path."""
    best, splits = float("inf"), set()
    for path in all_dtw_paths(*cost.shape):
        c = float(sum(cost[i, j] for i, j in path))
        split = max(j for i, j in path if i == 0)
        if c < best - 1e-9:
            best, splits = c, {split}
        elif abs(c - best) <= 1e-9:
            splits.add(split)
    return best, splits


@pytest.mark.parametrize("shots", [2, 3, 5, 17])
def test_dtw_split_matches_brute_force_search(shots):
    g = torch.Generator().manual_seed(shots)
    cost = torch.rand(24, 2, shots, generator=g, dtype=torch.float64)
    split = dtw_split(cost)
    for b in range(cost.shape[0]):
        best, splits = brute_force_split(cost[b])
        j = int(split[b])
        ours = float(cost[b, 0, : j + 1].sum() + cost[b, 1, j + 1 :].sum())
        assert ours == pytest.approx(best) and j in splits, (b, j, splits)
        assert 0 <= j <= shots - 2


def test_dtw_split_on_hand_made_similarities():
    # sparse shot 0 resembles dense shots 0-4, sparse shot 1 resembles 5-16: the boundary is after shot 4
    similarity = torch.zeros(1, 2, 17)
    similarity[0, 0, :5] = 0.9
    similarity[0, 1, 5:] = 0.8
    assert dtw_split(1 - similarity).tolist() == [4]
    similarity = torch.zeros(1, 2, 17)
    similarity[0, 0, :16] = 1.0  # even if sparse 0 matches all but the last: split <= S-2
    assert dtw_split(1 - similarity).tolist() == [15]
    with pytest.raises(ValueError, match="B×2×S"):
        dtw_split(torch.zeros(2, 3, 17))


def test_nce_loss_is_low_for_matching_pairs_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(16, 32, generator=g), dim=1)
    noisy = F.normalize(a + 0.05 * torch.randn(16, 32, generator=g), dim=1)
    other = F.normalize(torch.randn(16, 32, generator=g), dim=1)
    assert float(nce_loss(a, noisy)) < 0.1 < float(nce_loss(a, other))
    assert float(nce_loss(a, noisy)) == pytest.approx(float(nce_loss(noisy, a)), rel=1e-5)
    # by hand for B = 1: two rows, each one's only candidate is its partner -> loss 0
    x = F.normalize(torch.randn(1, 4, generator=g), dim=1)
    assert float(nce_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        nce_loss(a, a[:4])


def test_ssm_pulls_each_sparse_shot_to_its_aligned_scene():
    g = torch.Generator().manual_seed(1)
    scenes = F.normalize(torch.randn(8, 2, 16, generator=g), dim=-1)
    split = torch.randint(0, 16, (8,), generator=g)
    positions = torch.arange(17)[None, :]
    d = torch.where((positions <= split[:, None])[..., None], scenes[:, :1], scenes[:, 1:])  # B×17×16
    aligned = shot_scene_matching_loss(scenes, d, split)
    shuffled = shot_scene_matching_loss(scenes.flip(1), d, split)
    assert float(aligned) < float(shuffled)
    s = scenes.clone().requires_grad_(True)
    dd = d.clone().requires_grad_(True)
    shot_scene_matching_loss(s, dd, split).backward()
    assert s.grad.abs().sum() > 0 and dd.grad.abs().sum() > 0  # both branches learn


def test_msm_mask_and_loss():
    mask = msm_mask(200, 17, generator=torch.Generator().manual_seed(0))
    assert mask.any(dim=1).all()  # at least one masked shot per window
    assert 0.10 < mask.float().mean() < 0.22
    features = torch.randn(4, 17, 8, requires_grad=True)
    predicted = torch.randn(4, 17, 8, requires_grad=True)
    mask = msm_mask(4, 17, generator=torch.Generator().manual_seed(1))
    loss = masked_shot_loss(predicted, features, mask)
    assert float(loss) == pytest.approx(float(((predicted - features) ** 2)[mask].mean().detach()))
    loss.backward()
    assert features.grad is None  # the targets are detached
    assert (predicted.grad[~mask] == 0).all()


def test_sample_excluding_is_uniform_and_never_the_excluded_value():
    n = 20000
    low, high = torch.zeros(n, dtype=torch.long), torch.full((n,), 4, dtype=torch.long)
    values = sample_excluding(low, high, 2, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(values, minlength=5)
    assert counts[2] == 0 and counts[[0, 1, 3, 4]].min() > 0.23 * n
    with pytest.raises(ValueError, match="no value left"):
        sample_excluding(torch.tensor([3]), torch.tensor([3]), 3)


def test_pp_labels_the_boundary_shot():
    hidden = torch.zeros(6, 17, 4)
    split = torch.tensor([0, 3, 7, 8, 12, 15])
    hidden[torch.arange(6), split, 0] = 5.0  # the boundary token stands out in feature 0
    head = torch.nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.zero_(); head.bias.zero_(); head.weight[1, 0] = 10.0; head.bias[0] = 25.0
    assert float(boundary_prediction_loss(hidden, split, head)) < 0.01
    with torch.no_grad():
        head.weight[1, 0] = 0.0; head.bias[0] = -25.0  # every shot called a boundary
    assert float(boundary_prediction_loss(hidden, split, head)) > 5


def test_cgm_pairs_are_from_the_right_groups():
    # tokens carry their pseudo-scene (+1 / -1) in feature 0: the same-scene pair has product +1
    split = torch.tensor([2, 8, 7, 12, 0, 15])
    group = torch.where(torch.arange(17)[None, :] <= split[:, None], 1.0, -1.0)
    hidden = torch.stack([group, torch.ones_like(group)], dim=-1)
    seen = []

    def head(pairs):  # pairs: 2B×4 = cat(centre, other)
        seen.append(pairs)
        same = torch.sign(pairs[:, 0] * pairs[:, 2])  # +1 same scene, -1 not
        return torch.stack([-10 * same, 10 * same], dim=1)

    for seed in range(5):
        assert float(group_matching_loss(hidden, split, head, torch.Generator().manual_seed(seed))) < 1e-3
