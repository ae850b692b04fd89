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
    build_optimizer,
    cosine_momentum,
    default_param_groups,
    lr_factor,
    param_group,
    resolve_warmup_steps,
    slowfast_cosine,
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
    groups = default_param_groups("net", [("weight", weight), ("bias", bias)])
    cfg = OptimConfig(name="lars", lr=lr, momentum=0.0, weight_decay=wd, trust_coefficient=eta, lars_formula=formula)
    opt = build_optimizer(cfg, groups)
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
    opt = LARS([{"params": [p]}, {"params": [q], "lars": False, "weight_decay": 0.0}], lr=0.1, momentum=0.0,
               trust_coefficient=0.001)
    opt.step()
    assert torch.allclose(p.data, torch.tensor([[-0.1, -0.1]]))
    assert torch.allclose(q.data, torch.tensor([[0.9, -0.1]]))  # no decay, no adaptation


def test_lars_groups_decide_what_is_adapted_whatever_the_shape():
    """One LARS for every mask: a 1-d parameter in a ``lars`` group is adapted and decayed (BraVe's
    released mask), a matrix in a non-``lars`` group is plain SGD with its own decay."""
    vec = _param([3.0, 4.0], [0.0, 1.0])
    mat = _param([[1.0, 0.0]], [[1.0, 1.0]])
    opt = LARS([{"params": [vec], "lars": True, "weight_decay": 0.0},
                {"params": [mat], "lars": False, "weight_decay": 0.5}], lr=1.0, momentum=0.0, trust_coefficient=0.1)
    opt.step()
    assert torch.allclose(vec.data, torch.tensor([3.0, 3.5]))  # trust 0.1·5/1 → step 0.5·g
    assert torch.allclose(mat.data, torch.tensor([[1.0 - 1.5, -1.0]]))  # g + 0.5·w, no trust ratio


def test_lars_unknown_formula():
    with pytest.raises(ConfigError, match="unknown LARS formula"):
        LARS([nn.Parameter(torch.ones(2, 2))], lr=0.1, formula="you")


def test_default_param_groups_and_lr_multipliers():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    head = nn.Linear(4, 2)
    groups = (default_param_groups("backbone", net.named_parameters())
              + default_param_groups("predictor", head.named_parameters(), lr_mult=10.0))
    names = [g["name"] for g in groups]
    assert names == ["backbone", "backbone_no_decay", "predictor", "predictor_no_decay"]
    assert [len(g["params"]) for g in groups] == [1, 3, 1, 1]
    assert groups[1]["weight_decay_mult"] == 0.0 and not groups[1]["lars"] and groups[0]["lars"]
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.2, weight_decay=1e-4), groups)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2, 0.2, 2.0, 2.0])
    assert [g["weight_decay"] for g in opt.param_groups] == pytest.approx([1e-4, 0.0, 1e-4, 0.0])
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


def test_lr_factor_warmup_in_steps_or_epochs():
    steps = OptimConfig(lr=2.0, warmup_steps=4, warmup_start_lr=0.0)
    assert [lr_factor(steps, s, 20) for s in (0, 2, 4)] == pytest.approx([0.0, 0.5, 1.0])
    assert lr_factor(steps, 12, 20) == pytest.approx(0.5)  # half-way through the cosine after warm-up
    epochs = OptimConfig(lr=2.0, warmup_epochs=10, warmup_steps=-1, warmup_start_lr=0.0)
    assert resolve_warmup_steps(epochs, total_steps=1000, max_epochs=100) == 100  # 10 % of the run
    assert lr_factor(epochs, 50, 1000, max_epochs=100) == pytest.approx(0.5)
    assert lr_factor(OptimConfig(lr=0.0), 3, 10) == 0.0


def test_slowfast_cosine_runs_over_the_whole_run():
    """PySlowFast's get_lr_at_epoch: cosine from step 0; warm-up ends at the cosine's value there."""
    base, warm, total = 1.2, 35, 400
    at_end_of_warmup = base * (math.cos(math.pi * warm / total) + 1) / 2
    assert slowfast_cosine(warm, total, warm, base, 0.001) == pytest.approx(at_end_of_warmup)
    assert slowfast_cosine(warm / 2, total, warm, base, 0.001) == pytest.approx((0.001 + at_end_of_warmup) / 2)
    assert slowfast_cosine(200, total, warm, base) == pytest.approx(base / 2)  # not the after-warm-up cosine
    cfg = OptimConfig(lr=base, warmup_steps=warm, warmup_start_lr=0.001, schedule="slowfast_cosine")
    assert lr_factor(cfg, 200, total) == pytest.approx(0.5)
    assert lr_factor(OptimConfig(lr=base, warmup_steps=warm, schedule="cosine"), 200, total) != pytest.approx(0.5)


def test_param_group_is_fully_specified_and_grad_mult_default():
    g = param_group("heads", [nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2), requires_grad=False)],
                    lr_mult=2.0, grad_mult=0.5, weight_decay_mult=0.0, lars=False)
    assert set(g) == {"name", "params", "lr_mult", "grad_mult", "weight_decay_mult", "lars"}
    assert len(g["params"]) == 1 and (g["lr_mult"], g["grad_mult"], g["weight_decay_mult"], g["lars"]) == (2.0, 0.5, 0.0, False)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 1000) == pytest.approx(0.996)
    assert cosine_momentum(500, 1000) == pytest.approx(0.998)
    assert cosine_momentum(1000, 1000) == pytest.approx(1.0)
    values = [cosine_momentum(s, 50) for s in range(51)]
    assert all(a <= b for a, b in zip(values, values[1:]))
