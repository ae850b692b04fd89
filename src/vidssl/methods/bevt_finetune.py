"""BEVT's fine-tuning pieces (reference §3.9): Swin layer-wise lr decay groups and a weight EMA.

**Layer-wise lr decay** (K400 config, ``lw_lr_decay = 0.9``): the backbone is cut into units, bottom-up
``patch_embed``, then per stage its blocks and its patch merging; for Swin-B (2, 2, 18, 2) that is 28
units. Unit ``i`` (0 = ``patch_embed``) gets ``lr · decay^(28 - i)``: ``patch_embed`` ×0.9²⁸, the last
block ×0.9, the final ``norm`` ×0.9 too, the classifier ×1 — the seed's ``custom_keys`` table, computed
for any depth. **Backbone multiplier** (SSv2 config): every backbone parameter ×``backbone_lr_mult``.
Parameters whose names contain ``norm``, ``relative_position_bias_table`` or ``absolute_pos_embed`` get
no weight decay, everywhere. (The seed's mmcv ``custom_keys`` picks the LONGEST matching key, so inside
the listed blocks the block key wins and their norms and bias tables WERE decayed in K400 fine-tuning,
and in SSv2 fine-tuning the bias tables escaped the backbone's ×0.1; we apply both rules to every
parameter, the evident intent, and record it in docs/bevt.md.)

**EMA** (SSv2 config, mmcv ``EMAHook`` defaults): ``ema ← (1-m)·ema + m·θ`` after every step with
``m = min(0.0002, (1+step)/(100+step))``; the test uses the EMA weights.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

NO_DECAY_KEYS = ("norm", "relative_position_bias_table", "absolute_pos_embed")


def swin_layer_exponents(depths: list[int] | tuple[int, ...]) -> dict[str, int]:
    """``{unit prefix: exponent}`` for a Swin's backbone (prefixes without ``backbone.``).

    Example:
        >>> e = swin_layer_exponents((2, 2, 18, 2))
        >>> e["patch_embed"], e["layers.0.blocks.0"], e["layers.2.downsample"], e["layers.3.blocks.1"], e["norm"]
        (28, 27, 3, 1, 1)
    """
    units = ["patch_embed"]
    for stage, depth in enumerate(depths):
        units += [f"layers.{stage}.blocks.{b}" for b in range(depth)]
        if stage < len(depths) - 1:
            units.append(f"layers.{stage}.downsample")
    top = len(units)
    exponents = {unit: top - i for i, unit in enumerate(units)}
    exponents["norm"] = 1
    return exponents


def _unit_of(name: str, exponents: dict[str, int]) -> str | None:
    if name.startswith("patch_embed"):  # patch_embed and patch_embed_2d
        return "patch_embed"
    match = re.match(r"(layers\.\d+\.(?:blocks\.\d+|downsample))\.", name)
    if match:
        return match.group(1)
    if name.startswith("norm."):
        return "norm"
    if name == "mask_token":
        return "patch_embed"
    return None


def finetune_param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0,
                          backbone_lr_mult: float = 1.0, no_decay_keys=NO_DECAY_KEYS) -> list[dict[str, Any]]:
    """AdamW groups for ``model.backbone`` (a SwinBEVT: ``layers``, ``patch_embed``, ``norm``) + ``model.head``.

    ``layer_decay < 1`` needs a Swin backbone (its depths come from ``model.backbone.layers``).
    """
    backbone = model.backbone
    exponents = None
    if layer_decay != 1.0:
        if not hasattr(backbone, "layers"):
            raise ValueError(f"layer-wise lr decay needs a Swin backbone (with .layers), got {type(backbone).__name__}")
        exponents = swin_layer_exponents([len(stage.blocks) for stage in backbone.layers])
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_mult = 1.0
        if name.startswith("backbone."):
            inner = name[len("backbone."):]
            lr_mult = backbone_lr_mult
            if exponents is not None:
                unit = _unit_of(inner, exponents)
                if unit is None:
                    raise ValueError(f"no layer-wise lr decay level for backbone parameter '{inner}'")
                lr_mult *= layer_decay ** exponents[unit]
        decay = 0.0 if any(key in name for key in no_decay_keys) else weight_decay
        groups.setdefault((lr_mult, decay), []).append(param)
    return [{"params": params, "lr": lr * lr_mult, "lr_mult": lr_mult, "weight_decay": decay}
            for (lr_mult, decay), params in sorted(groups.items(), key=lambda kv: -kv[0][0])]


class ParamEMA:
    """mmcv's ``EMAHook``: an exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: nn.Module, momentum: float = 0.0002, warm_up: int = 100):
        self.momentum, self.warm_up = momentum, warm_up
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        m = min(self.momentum, (1 + step) / (self.warm_up + step))
        for name, param in model.named_parameters():
            shadow = self.shadow[name]
            if shadow.device != param.device:
                shadow = self.shadow[name] = shadow.to(param.device)
            shadow.mul_(1 - m).add_(param.detach(), alpha=m)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            param.copy_(self.shadow[name].to(param.device))
