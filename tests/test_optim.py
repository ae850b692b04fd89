"""LARS against hand-computed steps, parameter groups, warmup + cosine and the momentum schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vidssl.errors import ConfigError
from vidssl.optim import (
    LARS,
    OptimConfig,
    WarmupCosineSchedule,
    build_optimizer,
    cosine_momentum,
    split_decay_groups,
    warmup_cosine,
)


def _param(values, grad):
    p = nn.Parameter(torch.tensor(values))
    p.grad = torch.tensor(grad)
    return p


@pytest.mark.parametrize("formula", ["pyslowfast", "update_norm"])
def test_lars_step_matches_hand_computation(formula):
    w0 = [[3.0, 4.0], [0.0, 0.0]]  # ‖w‖ = 5
    g0 = [[1.0, 0.0], [0.0, 2.0]]  # ‖g‖ = √5
    lr, wd, eta = 0.5, 0.1, 0.02
    weight = _param(w0, g0)
    bias = _param([1.0, -1.0], [0.5, 0.5])
    groups = split_decay_groups([{"name": "net", "params": [weight, bias]}], weight_decay=wd)
    opt = LARS(groups, lr=lr, momentum=0.0, weight_decay=wd, trust_coefficient=eta, formula=formula)
    opt.step()

    w, g = torch.tensor(w0), torch.tensor(g0)
    update = g + wd * w  # weight decay folded into the gradient
    if formula == "pyslowfast":
        trust = eta * 5.0 / (math.sqrt(5.0) + wd * 5.0 + 1e-8)
    else:
        trust = eta * 5.0 / (update.norm().item() + 1e-8)
    expected = w - lr * trust * update
    assert torch.allclose(weight.data, expected, atol=1e-6)
    # the bias (ndim 1): plain SGD, no decay, no adaptation
    assert torch.allclose(bias.data, torch.tensor([1.0, -1.0]) - lr * torch.tensor([0.5, 0.5]))


def test_lars_momentum_accumulates_adapted_gradient():
    p = _param([[3.0, 4.0]], [[0.0, 1.0]])
    opt = LARS([p], lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1.0, nesterov=False)
    opt.step()  # trust = 5 / 1 → step 5·g
    assert torch.allclose(p.data, torch.tensor([[3.0, -1.0]]))
    p.grad = torch.tensor([[0.0, 1.0]])  # ‖w‖ now √10
    opt.step()
    buf = 0.9 * 5.0 + math.sqrt(10.0)
    assert torch.allclose(p.data, torch.tensor([[3.0, -1.0 - buf]]), atol=1e-5)


def test_lars_zero_weight_falls_back_to_ratio_one_and_excluded_groups_skip():
    p = _param([[0.0, 0.0]], [[1.0, 1.0]])
    q = _param([[1.0, 0.0]], [[1.0, 1.0]])
    opt = LARS([{"params": [p]}, {"params": [q], "lars_exclude": True, "weight_decay": 0.5}], lr=0.1, momentum=0.0,
               trust_coefficient=0.001)
    opt.step()
    assert torch.allclose(p.data, torch.tensor([[-0.1, -0.1]]))
    assert torch.allclose(q.data, torch.tensor([[0.9, -0.1]]))  # no decay, no adaptation


def test_lars_unknown_formula():
    with pytest.raises(ConfigError, match="unknown LARS formula"):
        LARS([nn.Parameter(torch.ones(2, 2))], lr=0.1, formula="you")


def test_split_decay_groups_and_lr_multipliers():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    head = nn.Linear(4, 2)
    groups = split_decay_groups([{"name": "backbone", "params": list(net.parameters())},
                                 {"name": "predictor", "params": list(head.parameters()), "lr_mult": 10.0}], 1e-4)
    names = [g["name"] for g in groups]
    assert names == ["backbone", "backbone_no_decay", "predictor", "predictor_no_decay"]
    assert [len(g["params"]) for g in groups] == [1, 3, 1, 1]
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lars_exclude"]
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.2), groups)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2, 0.2, 2.0, 2.0])
    assert isinstance(build_optimizer(OptimConfig(name="adamw", lr=1e-3), groups), torch.optim.AdamW)
    assert isinstance(build_optimizer(OptimConfig(name="lars"), groups), LARS)


def test_warmup_cosine_values():
    assert warmup_cosine(0, 100, 10, 1.0, start_lr=0.001) == pytest.approx(0.001)
    assert warmup_cosine(5, 100, 10, 1.0, start_lr=0.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, 1.0, final_lr=0.01) == pytest.approx(0.01)
    assert warmup_cosine(500, 100, 10, 1.0) == pytest.approx(0.0)  # clamps after the end
    values = [warmup_cosine(s, 100, 10, 1.0) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay after warmup


def test_schedule_drives_scheduled_groups_only():
    a, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    cfg = OptimConfig(name="sgd", lr=1.0, warmup_start_lr=0.0)
    opt = build_optimizer(cfg, [{"params": [a]}, {"params": [b], "lr": 0.1, "scheduled": False}])
    sched = WarmupCosineSchedule(opt, cfg, total_steps=20, warmup_steps=4)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [s[0] for s in seen[:5]] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert all(s[1] == pytest.approx(0.1) for s in seen)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 1000) == pytest.approx(0.996)
    assert cosine_momentum(500, 1000) == pytest.approx(0.998)
    assert cosine_momentum(1000, 1000) == pytest.approx(1.0)
    values = [cosine_momentum(s, 50) for s in range(51)]
    assert all(a <= b for a, b in zip(values, values[1:]))
