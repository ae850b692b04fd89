"""Property tests of the pure loss functions (known values, invariances, gradient direction)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidssl.losses import (
    byol_loss,
    dino_alignment_loss,
    info_nce_loss,
    memory_addressing,
    memory_readout,
    reconstruction_loss,
    update_center,
)


def test_byol_loss_known_values():
    v = F.normalize(torch.randn(5, 16), dim=-1)
    assert byol_loss(v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(v, -v).item() == pytest.approx(4.0, abs=1e-6)
    orthogonal = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert byol_loss(*orthogonal).item() == pytest.approx(2.0)


def test_byol_loss_scale_invariant_and_range():
    p, z = torch.randn(8, 32), torch.randn(8, 32)
    base = byol_loss(p, z)
    assert byol_loss(7.0 * p, 0.1 * z).item() == pytest.approx(base.item(), rel=1e-5)
    expected = (2 - 2 * torch.nn.functional.cosine_similarity(p, z, dim=-1)).mean()
    assert base.item() == pytest.approx(expected.item(), rel=1e-5)


def test_byol_loss_gradient_moves_prediction_towards_target_and_stops_at_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    before = byol_loss(p, z)
    before.backward()
    assert z.grad is None  # the target branch gets no gradient
    with torch.no_grad():
        stepped = p - 0.1 * p.grad
    assert byol_loss(stepped, z) < before
    # gradient is orthogonal to p (the loss only depends on p's direction)
    assert torch.allclose((p.grad * p).sum(-1), torch.zeros(4), atol=1e-5)


def test_memory_addressing_sums_to_one_and_matches_einsum():
    torch.manual_seed(0)
    q, keys = torch.randn(3, 2, 8), torch.randn(2, 5, 8)
    w = memory_addressing(q, keys, scale=16.0)
    assert w.shape == (3, 2, 5)
    assert torch.allclose(w.sum(-1), torch.ones(3, 2), atol=1e-6)
    manual = torch.softmax(16.0 * torch.einsum("bhd,hsd->bhs", F.normalize(q, dim=-1), F.normalize(keys, dim=-1)), -1)
    assert torch.allclose(w, manual, atol=1e-6)
    # invariant to the norms of queries and keys (cosine addressing)
    assert torch.allclose(memory_addressing(3 * q, 0.5 * keys, 16.0), w, atol=1e-6)
    # a larger scale sharpens the distribution towards the closest key
    sharp = memory_addressing(q, keys, scale=64.0)
    assert (sharp.max(-1).values >= w.max(-1).values - 1e-6).all()


def test_memory_readout_is_weighted_sum_of_values():
    values = torch.randn(1, 4, 3)
    weights = torch.tensor([[[0.25, 0.25, 0.5, 0.0]]])
    expected = 0.25 * values[0, 0] + 0.25 * values[0, 1] + 0.5 * values[0, 2]
    assert torch.allclose(memory_readout(weights, values)[0], expected, atol=1e-6)


def test_reconstruction_loss_cosine_averages_over_every_element():
    pred, target = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # |1 - cos| = 1, divided by B·D = 2 (the original code's AVERAGE_DIM: -1)
    assert reconstruction_loss(pred, target, "cosine").item() == pytest.approx(0.5)
    assert reconstruction_loss(pred, target, "l2").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        reconstruction_loss(pred, target, "l1")


def test_reconstruction_loss_target_is_detached():
    pred = torch.randn(2, 4, requires_grad=True)
    target = torch.randn(2, 4, requires_grad=True)
    reconstruction_loss(pred, target).backward()
    assert target.grad is None and pred.grad is not None


def test_dino_alignment_known_value_and_teacher_detached():
    k = 4
    student = torch.zeros(2, k, requires_grad=True)  # uniform student
    teacher = torch.randn(2, k, requires_grad=True)
    loss = dino_alignment_loss(student, teacher, torch.zeros(1, k))
    assert loss.item() == pytest.approx(math.log(k), rel=1e-5)  # CE against uniform = log K
    loss.backward()
    assert teacher.grad is None
    # the centre shifts the teacher: subtracting a per-concept offset changes the target
    c = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    s = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert dino_alignment_loss(s, t, c) > dino_alignment_loss(s, t, torch.zeros(1, 4))


def test_update_center_is_ema_of_batch_mean():
    center = torch.ones(1, 3)
    logits = torch.tensor([[0.0, 2.0, 4.0], [2.0, 4.0, 6.0]])
    new = update_center(center, logits, momentum=0.9)
    assert torch.allclose(new, 0.9 * center + 0.1 * torch.tensor([[1.0, 3.0, 5.0]]))
    # not distributed: the quirk flag changes nothing (it only divides by a world size of 1)
    assert torch.allclose(update_center(center, logits, 0.9, world_size_quirk=True), new)


def test_info_nce_prefers_the_positive():
    q = torch.randn(4, 8)
    good = info_nce_loss(q, q, torch.arange(4))
    bad = info_nce_loss(q, q, torch.tensor([1, 2, 3, 0]))
    assert good < bad
