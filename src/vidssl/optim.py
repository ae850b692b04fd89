"""Optimisers and schedules shared by every method: LARS, SGD, AdamW, warmup + cosine.

Parameter groups are plain dicts ``{"name", "params", "lr_mult"}`` (``lr_mult``
scales the group's learning rate, e.g. BraVe's ×10 predictor). :func:`split_decay_groups`
separates biases and normalisation parameters (``ndim ≤ 1``): they get no weight
decay and, under LARS, no trust-ratio adaptation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import torch

from vidssl.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``lr`` is the peak learning rate of the whole run (not scaled by batch size here;
    presets state the value the seed used for its global batch). Warmup is linear from
    ``warmup_start_lr`` over ``warmup_epochs`` (a fraction of the run's steps equal to
    ``warmup_epochs / trainer.max_epochs``, so a run cut short by ``max_steps`` keeps
    the schedule's shape), then cosine to ``final_lr``, updated every step.
    """

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = 1.2
    weight_decay: float = 1e-6
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    trust_coefficient: float = 0.001
    lars_formula: Literal["pyslowfast", "update_norm"] = "pyslowfast"
    warmup_epochs: float = 35.0
    warmup_start_lr: float = 0.001
    final_lr: float = 0.0
    grad_clip: float = 0.0


class LARS(torch.optim.SGD):
    """SGD with momentum wrapped in layer-wise adaptive rate scaling (You et al., 2017).

    For every parameter with ``ndim > 1`` in a group without ``lars_exclude``, the
    gradient is replaced by ``(g + wd·w) · η · trust(w, g)`` before the SGD update, with
    η = ``trust_coefficient`` and

    - ``formula="pyslowfast"`` (FGKVMemPred / PySlowFast ``LARS.step``):
      ``trust = ‖w‖ / (‖g‖ + wd·‖w‖ + eps)``;
    - ``formula="update_norm"`` (BYOL/SimCLR reference implementations):
      ``trust = ‖w‖ / (‖g + wd·w‖ + eps)``.

    When ``‖w‖`` or ``‖g‖`` is 0 the ratio is 1 (PySlowFast would freeze an all-zero
    weight; we do not). Biases, norm parameters (``ndim ≤ 1``) and excluded groups get
    neither weight decay nor adaptation. Weight decay is applied here, never by SGD.

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
        if params and isinstance(params[0], dict):
            # A group's "weight_decay" becomes its LARS decay (folded into the gradient in step()).
            params = [{**g, "lars_weight_decay": g.get("weight_decay", weight_decay), "weight_decay": 0.0} for g in params]
        else:
            params = [{"params": params, "lars_weight_decay": weight_decay}]
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, nesterov=nesterov and momentum > 0)
        for group in self.param_groups:
            group.setdefault("trust_coefficient", trust_coefficient)
            group.setdefault("lars_exclude", False)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["lars_exclude"]:
                continue
            wd = group["lars_weight_decay"]
            eta = group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None or p.ndim <= 1:
                    continue
                g = p.grad
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(g)
                update = g.add(p, alpha=wd) if wd else g
                if self.formula == "pyslowfast":
                    denom = g_norm + wd * w_norm + self.eps
                else:
                    denom = torch.linalg.vector_norm(update) + self.eps
                ratio = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / denom, torch.ones_like(w_norm))
                p.grad = update.mul_(ratio) if update is not g else g.mul(ratio)
        super().step()
        return loss


def split_decay_groups(groups: list[dict[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Split each ``{"name", "params", "lr_mult", ...}`` group into decayed (``ndim > 1``) and
    non-decayed (biases, norm weights: ``ndim ≤ 1``) groups. Non-decayed groups get
    ``weight_decay = 0`` and ``lars_exclude = True``. Empty groups are dropped.
    """
    out = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        extra = {k: v for k, v in group.items() if k != "params"}
        extra.setdefault("lr_mult", 1.0)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        if decay:
            out.append({**extra, "params": decay, "weight_decay": extra.get("weight_decay", weight_decay)})
        if no_decay:
            out.append({**extra, "name": f"{extra.get('name', 'group')}_no_decay", "params": no_decay,
                        "weight_decay": 0.0, "lars_exclude": True})
    return out


def build_optimizer(cfg: OptimConfig, groups: list[dict[str, Any]], device_type: str = "cpu") -> torch.optim.Optimizer:
    """Build ``cfg.name`` over ``groups`` (already split by :func:`split_decay_groups`).

    Each group's ``lr`` is ``cfg.lr · lr_mult`` (the schedule later multiplies it by the
    warmup/cosine factor). SGD and AdamW use fused kernels on CUDA.
    """
    groups = [{**g, "lr": g.get("lr", cfg.lr * g.get("lr_mult", 1.0))} for g in groups]
    fused = device_type == "cuda"
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                    trust_coefficient=cfg.trust_coefficient, formula=cfg.lars_formula)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=fused or None)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None)
    raise ConfigError(f"unknown optimizer '{cfg.name}' (expected lars, sgd or adamw)")


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


class WarmupCosineSchedule(torch.optim.lr_scheduler.LambdaLR):
    """Per-step warmup + cosine for every group whose ``scheduled`` flag is true (default).

    A group's lr becomes ``group_base_lr · warmup_cosine(step)/cfg.lr``; groups with
    ``scheduled=False`` (the online probe) keep a constant lr.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, warmup_steps: int,
                 last_epoch: int = -1) -> None:
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.base_lr, self.start_lr, self.final_lr = cfg.lr, cfg.warmup_start_lr, cfg.final_lr
        lambdas = [self._factor if g.get("scheduled", True) else _constant for g in optimizer.param_groups]
        super().__init__(optimizer, lambdas, last_epoch=last_epoch)

    def _factor(self, step: int) -> float:
        if self.base_lr == 0:
            return 0.0
        lr = warmup_cosine(step, self.total_steps, self.warmup_steps, self.base_lr, self.start_lr, self.final_lr)
        return lr / self.base_lr


def _constant(step: int) -> float:
    return 1.0
