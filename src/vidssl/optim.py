"""Optimisers and schedules shared by every method: one LARS, SGD, AdamW, one schedule function.

A method returns fully specified parameter groups (:func:`param_group`): ``name``, ``params``,
``lr_mult`` (scales the group's learning rate, e.g. BraVe's ×10 predictor), ``grad_mult``
(scales its gradients before the step), ``weight_decay_mult`` (0 = no decay) and ``lars``
(whether the LARS trust ratio and weight decay apply). :func:`default_param_groups` is the usual
split: biases and normalisation parameters (``ndim ≤ 1``) get no weight decay and no LARS
adaptation. :func:`build_optimizer` turns groups into an optimiser; :func:`lr_factor` is the one
learning-rate schedule (warm-up in steps or epochs, two cosine shapes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import torch
from torch import Tensor, nn

from vidssl.config import checked
from vidssl.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``lr`` is the peak learning rate of the whole run (not scaled by batch size here; presets
    state the value the seed used for its global batch). Warm-up is linear from
    ``warmup_start_lr`` over ``warmup_steps`` optimiser steps or, when that is negative, over
    ``warmup_epochs`` (a fraction of the run's steps equal to ``warmup_epochs /
    trainer.max_epochs``, so a run cut short by ``max_steps`` keeps the schedule's shape).
    ``schedule``: ``"cosine"`` = cosine from ``lr`` to ``final_lr`` over the steps after warm-up
    (BraVe, optax ``warmup_cosine_decay_schedule``); ``"slowfast_cosine"`` = PySlowFast's cosine
    over the whole run, warm-up rising linearly to the cosine's value at its end; ``"constant"`` =
    ``lr`` after warm-up (GDT, STiCA). The lr is set every step as a pure function of the step.
    """

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = checked(1.2, ge=0)
    weight_decay: float = checked(1e-6, ge=0)
    momentum: float = checked(0.9, ge=0, le=1)
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    trust_coefficient: float = checked(0.001, gt=0)
    lars_formula: Literal["pyslowfast", "update_norm"] = "pyslowfast"
    schedule: Literal["cosine", "slowfast_cosine", "constant"] = "cosine"
    warmup_epochs: float = checked(35.0, ge=0)
    warmup_steps: int = checked(-1, ge=0, also=(-1,), why="-1: use warmup_epochs")
    warmup_start_lr: float = checked(0.001, ge=0)
    final_lr: float = checked(0.0, ge=0)
    grad_clip: float = checked(0.0, ge=0, why="0: no clipping")


def param_group(name: str, params: Iterable[Tensor], lr_mult: float = 1.0, grad_mult: float = 1.0,
                weight_decay_mult: float = 1.0, lars: bool = True) -> dict[str, Any]:
    """A fully specified parameter group (see the module docstring); trainable parameters only.

    Example:
        >>> g = param_group("predictor", nn.Linear(2, 2).parameters(), lr_mult=10.0)
        >>> g["name"], g["lr_mult"], g["weight_decay_mult"], g["lars"], len(g["params"])
        ('predictor', 10.0, 1.0, True, 2)
    """
    return {"name": name, "params": [p for p in params if p.requires_grad], "lr_mult": float(lr_mult),
            "grad_mult": float(grad_mult), "weight_decay_mult": float(weight_decay_mult), "lars": bool(lars)}


def is_bias_or_norm(name: str, param: Tensor) -> bool:
    """Biases and normalisation parameters: 1-d tensors or names ending in ``.bias``."""
    return param.ndim <= 1 or name.endswith(".bias")


def default_param_groups(name: str, named_params: Iterable[tuple[str, Tensor]], lr_mult: float = 1.0,
                         grad_mult: float = 1.0) -> list[dict[str, Any]]:
    """Two groups of one set of parameters: weights (decayed, LARS-adapted) and
    ``<name>_no_decay`` (biases and norm parameters: no decay, no LARS). Empty groups are dropped.

    Example:
        >>> [(g["name"], g["weight_decay_mult"], g["lars"]) for g in default_param_groups("net", nn.Linear(2, 2).named_parameters())]
        [('net', 1.0, True), ('net_no_decay', 0.0, False)]
    """
    named = [(n, p) for n, p in named_params if p.requires_grad]
    weights = [p for n, p in named if not is_bias_or_norm(n, p)]
    others = [p for n, p in named if is_bias_or_norm(n, p)]
    groups = [param_group(name, weights, lr_mult, grad_mult),
              param_group(f"{name}_no_decay", others, lr_mult, grad_mult, weight_decay_mult=0.0, lars=False)]
    return [g for g in groups if g["params"]]


class LARS(torch.optim.SGD):
    """SGD with momentum wrapped in layer-wise adaptive rate scaling (You et al., 2017).

    For every parameter of a group with ``lars=True`` (the default), the gradient is replaced by
    ``(g + wd·w) · η · trust(w, g)`` before the SGD update, with η = ``trust_coefficient``,
    wd = the group's ``weight_decay`` and

    - ``formula="pyslowfast"`` (FGKVMemPred / PySlowFast ``LARS.step``):
      ``trust = ‖w‖ / (‖g‖ + wd·‖w‖ + eps)``;
    - ``formula="update_norm"`` (BYOL/SimCLR/BraVe reference implementations):
      ``trust = ‖w‖ / (‖g + wd·w‖ + eps)``.

    When ``‖w‖`` or ``‖g‖`` is 0 the ratio is 1 (PySlowFast would freeze an all-zero weight; we
    do not). Which parameters are adapted is decided by the groups alone, whatever their
    shape, so one class serves the usual split (:func:`default_param_groups`) and BraVe's
    released mask, which adapts only biases and BN parameters. Groups with ``lars=False`` are
    plain SGD with their own ``weight_decay``.

    Example:
        >>> w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
        >>> w.grad = torch.tensor([[0.0, 1.0]])
        >>> opt = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0, trust_coefficient=0.1)
        >>> opt.step(); w.data            # step = lr · 0.1 · ‖w‖/‖g‖ · g = 0.5 · g
        tensor([[3.0000, 3.5000]])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        trust_coefficient: float = 0.001,
        formula: Literal["pyslowfast", "update_norm"] = "pyslowfast",
        eps: float = 1e-8,
    ) -> None:
        if formula not in ("pyslowfast", "update_norm"):
            raise ConfigError(f"unknown LARS formula '{formula}' (expected 'pyslowfast' or 'update_norm')")
        self.formula = formula
        self.eps = eps
        params = list(params)
        if not params or not isinstance(params[0], dict):
            params = [{"params": params}]
        groups = []
        for g in params:
            adapted = bool(g.get("lars", True))
            wd = g.get("weight_decay", weight_decay)
            # adapted groups fold their decay into the gradient in step(); the others are plain SGD
            groups.append({**g, "lars": adapted, "lars_weight_decay": wd if adapted else 0.0,
                           "weight_decay": 0.0 if adapted else wd})
        super().__init__(groups, lr=lr, momentum=momentum, weight_decay=0.0, nesterov=nesterov and momentum > 0)
        for group in self.param_groups:
            group.setdefault("trust_coefficient", trust_coefficient)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if not group["lars"]:
                continue
            wd = group["lars_weight_decay"]
            eta = group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(g)
                update = g.add(p, alpha=wd) if wd else g.clone()
                if self.formula == "pyslowfast":
                    denom = g_norm + wd * w_norm + self.eps
                else:
                    denom = torch.linalg.vector_norm(update) + self.eps
                ratio = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / denom, torch.ones_like(w_norm))
                p.grad = update.mul_(ratio)
        super().step()
        return loss


def build_optimizer(cfg: OptimConfig, groups: list[dict[str, Any]], device_type: str = "cpu") -> torch.optim.Optimizer:
    """Build ``cfg.name`` over fully specified ``groups`` (:func:`param_group`).

    Each group's ``lr`` is ``cfg.lr · lr_mult`` unless the group sets ``lr`` itself (the online
    probe) and its ``weight_decay`` is ``cfg.weight_decay · weight_decay_mult`` unless set. SGD
    and AdamW use fused kernels on CUDA; they ignore the ``lars`` flag.
    """
    built = []
    for g in groups:
        g = {"lr_mult": 1.0, "grad_mult": 1.0, "weight_decay_mult": 1.0, "lars": True, **g}
        g.setdefault("lr", cfg.lr * g["lr_mult"])
        g.setdefault("weight_decay", cfg.weight_decay * g["weight_decay_mult"])
        built.append(g)
    fused = device_type == "cuda"
    if cfg.name == "lars":
        return LARS(built, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                    trust_coefficient=cfg.trust_coefficient, formula=cfg.lars_formula)
    if cfg.name == "sgd":
        return torch.optim.SGD(built, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=fused or None)
    if cfg.name == "adamw":
        return torch.optim.AdamW(built, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None)
    raise ConfigError(f"unknown optimizer '{cfg.name}' (expected lars, sgd or adamw)")


@torch.no_grad()
def apply_grad_multipliers(optimizer: torch.optim.Optimizer) -> None:
    """Multiply each group's gradients by its ``grad_mult`` (call after backward, before clipping and
    ``step``): a gradient multiplier acts *before* weight decay and the LARS trust ratio, unlike a
    learning-rate multiplier (BraVe's ×10 predictor)."""
    for group in optimizer.param_groups:
        mult = group.get("grad_mult", 1.0)
        if mult != 1.0:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, mult)


def resolve_warmup_steps(cfg: OptimConfig, total_steps: int, max_epochs: int = 1) -> int:
    """Warm-up length in steps: ``warmup_steps`` when >= 0, else ``warmup_epochs`` as a fraction of the run."""
    if cfg.warmup_steps >= 0:
        return min(cfg.warmup_steps, total_steps)
    return int(round(total_steps * min(1.0, cfg.warmup_epochs / max(1, max_epochs))))


def lr_factor(cfg: OptimConfig, step: float, total_steps: int, max_epochs: int = 1) -> float:
    """The learning rate at ``step`` as a fraction of ``cfg.lr``: every scheduled group's peak lr
    (``cfg.lr · lr_mult``) is multiplied by it. The one schedule of vidssl.

    Example:
        >>> cfg = OptimConfig(lr=1.0, warmup_steps=2, warmup_start_lr=0.0)
        >>> [round(lr_factor(cfg, s, 10), 3) for s in (0, 1, 2, 6, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
        >>> slow = OptimConfig(lr=1.0, warmup_steps=0, schedule="slowfast_cosine")
        >>> round(lr_factor(slow, 5, 10), 3)
        0.5
    """
    if cfg.lr == 0:
        return 0.0
    warmup = resolve_warmup_steps(cfg, total_steps, max_epochs)
    if cfg.schedule == "constant":
        lr = warmup_cosine(step, total_steps, warmup, cfg.lr, cfg.warmup_start_lr, final_lr=cfg.lr)
    elif cfg.schedule == "slowfast_cosine":
        lr = slowfast_cosine(step, total_steps, warmup, cfg.lr, cfg.warmup_start_lr, cfg.final_lr)
    else:
        lr = warmup_cosine(step, total_steps, warmup, cfg.lr, cfg.warmup_start_lr, cfg.final_lr)
    return lr / cfg.lr


def slowfast_cosine(step: float, total_steps: float, warmup_steps: float, base_lr: float, start_lr: float = 0.0,
                    final_lr: float = 0.0) -> float:
    """PySlowFast's ``cosine`` policy with linear warm-up (``get_lr_at_epoch``): the cosine runs
    over the whole run from step 0; during warm-up the lr rises linearly from ``start_lr`` to the
    cosine's value at the end of warm-up (``COSINE_AFTER_WARMUP = False``).

    Example:
        >>> round(slowfast_cosine(0, 100, 5, 0.1, 1e-4), 6), round(slowfast_cosine(100, 100, 5, 0.1), 6)
        (0.0001, 0.0)
    """

    def cosine(t: float) -> float:
        progress = min(t, total_steps) / max(total_steps, 1)
        return final_lr + (base_lr - final_lr) * (math.cos(math.pi * progress) + 1) * 0.5

    if warmup_steps > 0 and step < warmup_steps:
        return start_lr + (cosine(warmup_steps) - start_lr) * step / warmup_steps
    return cosine(step)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, start_lr: float = 0.0,
                  final_lr: float = 0.0) -> float:
    """Learning rate at ``step``: linear ``start_lr → base_lr`` over ``warmup_steps``, then
    cosine ``base_lr → final_lr`` until ``total_steps``.

    Example:
        >>> [round(warmup_cosine(s, 10, 2, 1.0, start_lr=0.0), 3) for s in (0, 1, 2, 6, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if warmup_steps > 0 and step < warmup_steps:
        return start_lr + (base_lr - start_lr) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_lr + (base_lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum at ``step``: ``final - (final - base)·(cos(π·step/total) + 1)/2`` (BYOL, PySlowFast).

    Example:
        >>> cosine_momentum(0, 100), cosine_momentum(100, 100)
        (0.996, 1.0)
    """
    progress = min(1.0, step / max(1, total_steps))
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2

