"""BaSSL's pretext losses against numbers produced by the official code (kakaobrain/bassl @ 0651dd6).

The pinned numbers were produced outside this project by running the official
``bassl/pretrain/loss/pretext_task.py`` (``PretextTaskWrapper``: ``_compute_dtw_path`` with tslearn 0.10.0,
``_compute_boundary``, ``_compute_nce_loss`` with its precomputed masks for one process,
``_compute_ssm_loss``, ``_compute_msm_loss``, ``_compute_pp_loss``, ``_compute_cgm_loss``) on exactly the
tensors that :func:`fixed_inputs` builds. Heavy imports were stubbed: a CRN stand-in returning
``crn_out``, ``head_msm``/``head_pp``/``head_cgm`` set to the linear layers below, and its
``np.random.choice`` draws (PP negative, CGM shots) replaced by the fixed picks below, which the vidssl
side gets by replacing ``sample_excluding``. No official code is part of this file: only its outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.methods import bassl_pretext
from vidssl.methods.bassl_pretext import (
    boundary_prediction_loss,
    dtw_split,
    group_matching_loss,
    masked_shot_loss,
    nce_loss,
    shot_scene_matching_loss,
)

B, S, E, H, D = 3, 9, 16, 12, 8  # windows, dense shots, embedding, CRN hidden, shot-feature sizes
PLANTED_SPLITS = (2, 5, 6)  # dense shots 0..cut resemble sparse shot 0, the rest sparse shot 1 (plus noise)

# Official draws replaced by fixed picks (valid for the official splits 3, 6, 3 and centre shot 4)
PP_NEGATIVES = (7, 0, 5)  # one shot per window other than its pseudo-boundary
CGM_FIRST = (1, 0, 2)  # one shot of [0..split] other than the centre
CGM_SECOND = (8, 7, 8)  # one shot of [split+1..S-1] other than the centre

OFFICIAL_SPLITS = [3, 6, 3]  # _compute_boundary over tslearn's DTW paths
OFFICIAL_NCE = 0.22557716071605682  # _compute_nce_loss(cat([nce_a, nce_b])), T 0.1, batch 4, one process
OFFICIAL_SSM = 0.31490349769592285  # _compute_ssm_loss(sparse, dense, tslearn paths), batch 3
OFFICIAL_SSM_GRAD_NORMS = (1.5910524129867554, 1.2555656433105469)  # ‖∂SSM/∂sparse‖, ‖∂SSM/∂dense‖
OFFICIAL_MSM = 1.6893272399902344  # _compute_msm_loss(crn -> crn_out, features, mask), head_msm = msm linear
OFFICIAL_PP = 0.8391048312187195  # _compute_pp_loss(hidden, [3, 6, 3]) with PP_NEGATIVES
OFFICIAL_CGM = 0.7066207528114319  # _compute_cgm_loss(hidden, paths, [3, 6, 3]) with CGM_FIRST/SECOND


def fixed_inputs() -> dict[str, torch.Tensor]:
    """The tensors fed to the official code (NumPy's legacy RandomState: its stream never changes)."""
    rs = np.random.RandomState(20240)

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    sparse = F.normalize(t(rs.standard_normal((B, 2, E))), dim=-1)
    noise = t(rs.standard_normal((B, S, E)))
    dense = torch.stack([torch.stack([sparse[b, 0 if j <= cut else 1] + 0.9 * noise[b, j] for j in range(S)])
                         for b, cut in enumerate(PLANTED_SPLITS)])
    dense = F.normalize(dense, dim=-1)
    nce_a = F.normalize(t(rs.standard_normal((4, E))), dim=-1)
    nce_b = F.normalize(nce_a + 0.5 * t(rs.standard_normal((4, E))), dim=-1)
    hidden = t(rs.standard_normal((B, S, H)))
    pp_w, pp_b = 0.3 * t(rs.standard_normal((2, H))), 0.1 * t(rs.standard_normal(2))
    cgm_w, cgm_b = 0.3 * t(rs.standard_normal((2, 2 * H))), 0.1 * t(rs.standard_normal(2))
    features = t(rs.standard_normal((B, S, D)))
    crn_out = t(rs.standard_normal((B, S + 1, D)))  # CRN output, CLS token first
    msm_w, msm_b = 0.3 * t(rs.standard_normal((D, D))), 0.1 * t(rs.standard_normal(D))
    mask = torch.tensor([[0, 1, 0, 0, 0, 0, 0, 1, 0],
                         [1, 0, 0, 0, 0, 0, 0, 0, 0],
                         [0, 0, 1, 1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    return dict(sparse=sparse, dense=dense, nce_a=nce_a, nce_b=nce_b, hidden=hidden, pp_w=pp_w, pp_b=pp_b,
                cgm_w=cgm_w, cgm_b=cgm_b, features=features, crn_out=crn_out, msm_w=msm_w, msm_b=msm_b, mask=mask)


def linear(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


@pytest.fixture
def x():
    return fixed_inputs()


@pytest.fixture
def fixed_picks(monkeypatch):
    """Replace vidssl's random draws by the picks the official run used, checking each is a legal draw."""
    picks = iter([])

    def draw(low, high, exclude, generator=None):
        value = torch.tensor(next(picks))
        excluded = exclude if isinstance(exclude, torch.Tensor) else torch.full_like(low, int(exclude))
        assert ((value >= low) & (value <= high) & (value != excluded)).all(), (value, low, high, excluded)
        return value

    def use(*sequence):
        nonlocal picks
        picks = iter(sequence)

    monkeypatch.setattr(bassl_pretext, "sample_excluding", draw)
    return use


def test_dtw_split_equals_the_official_tslearn_boundary(x):
    cost = 1 - x["sparse"] @ x["dense"].transpose(1, 2)
    assert dtw_split(cost).tolist() == OFFICIAL_SPLITS


def test_dtw_split_on_random_embeddings_equals_tslearn():
    # 12 windows of 17 shots from unrelated random 32-d embeddings (near-flat costs; the best split beats
    # the second best by >= 0.04 here, so float rounding cannot flip them); splits from the official
    # _compute_dtw_path + _compute_boundary. A wider scratch sweep (5120 windows, 2..17 shots) agreed too.
    rs = np.random.RandomState(17)
    sparse = F.normalize(torch.from_numpy(rs.standard_normal((12, 2, 32)).astype(np.float32)), dim=-1)
    dense = F.normalize(torch.from_numpy(rs.standard_normal((12, 17, 32)).astype(np.float32)), dim=-1)
    cost = 1 - torch.bmm(sparse, dense.transpose(1, 2))
    assert dtw_split(cost).tolist() == [15, 15, 14, 9, 15, 12, 2, 11, 1, 13, 13, 15]


def test_nce_equals_official(x):
    # vidssl builds its masks from the tensor sizes (docs/bassl.md); with the official masks built for the
    # same batch (4, one process) both give the same number
    assert nce_loss(x["nce_a"], x["nce_b"]).item() == pytest.approx(OFFICIAL_NCE, abs=1e-6)


def test_ssm_value_and_gradients_equal_official(x):
    sparse = x["sparse"].clone().requires_grad_()
    dense = x["dense"].clone().requires_grad_()
    split = dtw_split(1 - sparse.detach() @ dense.detach().transpose(1, 2))
    loss = shot_scene_matching_loss(sparse, dense, split)
    loss.backward()
    assert loss.item() == pytest.approx(OFFICIAL_SSM, abs=1e-6)
    assert sparse.grad.norm().item() == pytest.approx(OFFICIAL_SSM_GRAD_NORMS[0], abs=1e-5)
    assert dense.grad.norm().item() == pytest.approx(OFFICIAL_SSM_GRAD_NORMS[1], abs=1e-5)


def test_msm_equals_official(x):
    predicted = linear(x["msm_w"], x["msm_b"])(x["crn_out"][:, 1:])  # CLS dropped, then the MSM head
    assert masked_shot_loss(predicted, x["features"], x["mask"]).item() == pytest.approx(OFFICIAL_MSM, abs=1e-6)


def test_pp_equals_official(x, fixed_picks):
    fixed_picks(PP_NEGATIVES)
    loss = boundary_prediction_loss(x["hidden"], torch.tensor(OFFICIAL_SPLITS), linear(x["pp_w"], x["pp_b"]))
    assert loss.item() == pytest.approx(OFFICIAL_PP, abs=1e-6)


def test_cgm_equals_official(x, fixed_picks):
    # windows 0 and 2: the centre (4) is in the second group; window 1: in the first
    fixed_picks(CGM_FIRST, CGM_SECOND)
    loss = group_matching_loss(x["hidden"], torch.tensor(OFFICIAL_SPLITS), linear(x["cgm_w"], x["cgm_b"]))
    assert loss.item() == pytest.approx(OFFICIAL_CGM, abs=1e-6)
