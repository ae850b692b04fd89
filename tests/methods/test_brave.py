"""BraVe: loss, heads, parameter groups, flow augmentation (pure pieces)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidssl.methods.brave import (
    BraveHeads,
    ProjectAndPredict,
    augment_flow,
    brave_loss,
    brave_param_groups,
    lars_adapted,
    regression_loss,
    safe_normalize,
)

# ---------------------------------------------------------------- loss


def test_regression_loss_known_values():
    # BraVe's own unit test: reg([1,2,3], [0,0,0]) == 0.5 (safe norm of a zero target)
    assert float(regression_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 3))) == pytest.approx(0.5)
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert float(regression_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(regression_loss(x, 5 * x)) == pytest.approx(0.0, abs=1e-7)  # scale invariant
    assert float(regression_loss(x, -x)) == pytest.approx(2.0)
    orth = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert float(regression_loss(x, orth)) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 16), st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_regression_loss_is_one_minus_cosine_and_scale_invariant(batch, dim, seed, scale):
    g = torch.Generator().manual_seed(seed)
    p, z = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    expected = (1 - torch.nn.functional.cosine_similarity(p, z, dim=-1)).mean()
    assert float(regression_loss(p, z)) == pytest.approx(float(expected), abs=1e-5)
    assert float(regression_loss(scale * p, z / scale)) == pytest.approx(float(expected), abs=1e-4)
    assert 0.0 <= float(regression_loss(p, z)) <= 2.0 + 1e-6


def test_regression_loss_stops_the_target_gradient_and_moves_prediction_towards_target():
    p = torch.tensor([[1.0, 0.2]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss = regression_loss(p, z)
    loss.backward()
    assert z.grad is None or not z.grad.any()
    with torch.no_grad():
        stepped = p - 0.1 * p.grad
    assert float(regression_loss(stepped, z)) < float(loss.detach())


def test_safe_normalize_has_finite_gradient_at_zero():
    x = torch.zeros(2, 4, requires_grad=True)
    out = safe_normalize(x)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and not out.any()
    y = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(safe_normalize(y), torch.tensor([[0.6, 0.8]]))


def test_regression_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        regression_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="B×D"):
        regression_loss(torch.zeros(3), torch.zeros(3))


def test_brave_loss_is_the_mean_of_both_directions_per_broad_view():
    g = torch.Generator().manual_seed(0)
    zn, hn, zb, hb, za, ha = (torch.randn(4, 8, generator=g) for _ in range(6))
    out = brave_loss((zn, hn), [(zb, hb)])
    expected = (regression_loss(hb, zn) + regression_loss(hn, zb)) / 2
    torch.testing.assert_close(out["loss"], expected)
    two = brave_loss((zn, hn), [(zb, hb), (za, ha)])
    terms = [regression_loss(hb, zn), regression_loss(hn, zb), regression_loss(ha, zn), regression_loss(hn, za)]
    torch.testing.assert_close(two["loss"], torch.stack(terms).mean())
    assert set(two) == {"loss", "loss_broad_to_narrow_0", "loss_narrow_to_broad_0",
                        "loss_broad_to_narrow_1", "loss_narrow_to_broad_1"}
    identical = brave_loss((zn, zn), [(zn, zn)])
    assert float(identical["loss"]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least one broad view"):
        brave_loss((zn, hn), [])


def test_loss_at_initialisation_is_about_one():
    """BraVe's sanity check: with random backbones' features and fresh heads the loss is ≈ 1."""
    torch.manual_seed(0)
    heads = BraveHeads({"narrow": 64, "broad_audio": 64}, hidden_dim=256)
    f_n, f_b = torch.randn(32, 64), torch.randn(32, 64)
    loss = brave_loss(heads("narrow", f_n), [heads("broad_audio", f_b)])["loss"]
    assert float(loss) == pytest.approx(1.0, abs=0.15)


# ---------------------------------------------------------------- heads


def test_head_shapes_and_layers():
    head = ProjectAndPredict(32, hidden_dim=64, out_dim=16)
    z, h = head(torch.randn(5, 32))
    assert z.shape == h.shape == (5, 16)
    kinds = [type(m).__name__ for m in head.projector]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert [type(m).__name__ for m in head.predictor] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    bn = head.projector[1]
    assert bn.momentum == pytest.approx(0.1) and bn.eps == pytest.approx(1e-5)
    # haiku Linear init: truncated normal with std 1/sqrt(fan_in), zero bias
    w = head.projector[0].weight
    assert float(w.abs().max()) <= 2 / math.sqrt(32) + 1e-6 and not head.projector[0].bias.any()


def test_shared_heads_use_one_set_of_weights():
    heads = BraveHeads({"narrow": 32, "broad_video_0": 32, "broad_audio": 32}, hidden_dim=64)
    assert sum(p.numel() for p in heads.parameters()) == sum(p.numel() for p in ProjectAndPredict(32, 64).parameters())
    heads.eval()
    x = torch.randn(3, 32)
    torch.testing.assert_close(heads("narrow", x)[0], heads("broad_audio", x)[0])


def test_shared_heads_with_two_widths_share_all_but_the_input_layer():
    heads = BraveHeads({"narrow": 64, "broad_audio": 32}, hidden_dim=48, out_dim=8)
    assert list(heads.input_layers) == ["64"]
    z64, h64 = heads("narrow", torch.randn(4, 64))
    z32, h32 = heads("broad_audio", torch.randn(4, 32))
    assert z64.shape == z32.shape == (4, 8)
    (z64.sum() + h64.sum()).backward()
    assert heads.input_layers["64"].weight.grad is not None
    assert heads.head.projector[0].weight.grad is None  # 32-wide input layer untouched
    assert heads.head.projector[3].weight.grad is not None  # shared rest


def test_per_view_heads_are_separate():
    heads = BraveHeads({"narrow": 16, "broad_audio": 16}, shared=False, hidden_dim=32)
    assert set(heads.heads) == {"narrow", "broad_audio"}


# ---------------------------------------------------------------- optimiser groups


def test_param_groups_predictor_lr_and_lars_mask():
    heads = BraveHeads({"narrow": 8}, hidden_dim=16, out_dim=4)
    named = list(heads.named_parameters())
    groups = {g["name"]: g for g in brave_param_groups(named)}
    assert set(groups) == {"main_lars", "main_plain", "predictor_lars", "predictor_plain"}
    assert groups["predictor_lars"]["lr_mult"] == 10.0 and groups["main_lars"]["lr_mult"] == 1.0
    # intended: weights adapted and decayed, biases / BN not
    assert all(p.ndim == 2 for p in groups["main_lars"]["params"])
    assert all(p.ndim == 1 for p in groups["main_plain"]["params"])
    assert groups["main_plain"]["weight_decay_mult"] == 0.0 and groups["main_lars"]["lars"]
    # faithful (released) mask: inverted
    faithful = {g["name"]: g for g in brave_param_groups(named, faithful_lars_mask=True)}
    assert all(p.ndim == 1 for p in faithful["main_lars"]["params"])
    assert all(p.ndim == 2 for p in faithful["main_plain"]["params"])
    total = sum(p.numel() for p in heads.parameters())
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == total


def test_lars_mask_names():
    w, b = torch.zeros(3, 3), torch.zeros(3)
    assert lars_adapted("head.projector.0.weight", w) and not lars_adapted("head.projector.0.bias", b)
    assert not lars_adapted("x.weight", w, faithful_lars_mask=True)
    assert lars_adapted("bn.weight", b, faithful_lars_mask=True)


# ---------------------------------------------------------------- flow augmentation


def test_augment_flow_keeps_vectors_consistent():
    flow = torch.zeros(8, 2, 3, 16, 16)
    flow[:, 0] = 0.1  # uniform motion to the right
    g = torch.Generator().manual_seed(0)
    out = augment_flow(flow, 8, generator=g)
    assert out.shape == (8, 2, 3, 8, 8)
    dx = out[:, 0].mean(dim=(1, 2, 3))
    # each sample: uniform, sign tells whether it was flipped, magnitude grows with the zoom (≥ 8/16)
    assert torch.all(dx.abs() >= 0.05 - 1e-6) and torch.all(dx.abs() <= 1.0)
    assert (dx < 0).any() and (dx > 0).any()
    assert torch.allclose(out[:, 1], torch.zeros_like(out[:, 1]))
    with pytest.raises(ValueError, match="B×2×T×H×W"):
        augment_flow(torch.zeros(1, 3, 2, 8, 8), 4)
