"""The seed recipes in the full presets: PySlowFast's lr shape and 30 fps for ρBYOL/FGKVMemPred, the
Slow-R18 stems and memory-predictor φ, computed from the official formulas / configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vidssl.config import preset_names
from vidssl.data.sampling import VideoShape
from vidssl.methods import METHODS
from vidssl.methods.train import load_pretrain_config
from vidssl.optim import lr_factor

FULL_SLOWFAST = [n for n in preset_names() if n.startswith(("byol_", "fgkvmem_")) and "demo" not in n]


def pyslowfast_lr(cur_epoch: float, base_lr: float, max_epoch: float, warmup_epochs: float, warmup_start_lr: float,
                  end_lr: float = 0.0) -> float:
    """``slowfast/utils/lr_policy.py``: ``get_lr_at_epoch`` with ``lr_func_cosine`` and
    ``COSINE_AFTER_WARMUP = False`` (the FGKVMemPred configs), written out from the official code."""

    def cosine(epoch: float) -> float:
        return end_lr + (base_lr - end_lr) * (math.cos(math.pi * epoch / max_epoch) + 1.0) * 0.5

    lr = cosine(cur_epoch)
    if cur_epoch < warmup_epochs:
        lr_end = cosine(warmup_epochs)
        alpha = (lr_end - warmup_start_lr) / warmup_epochs
        lr = cur_epoch * alpha + warmup_start_lr
    return lr


def test_there_are_full_slowfast_presets():
    assert len(FULL_SLOWFAST) == 18


@pytest.mark.parametrize("name", FULL_SLOWFAST)
def test_learning_rate_follows_pyslowfast_over_the_whole_run(name):
    cfg = load_pretrain_config(name)
    o, epochs = cfg.optim, cfg.trainer.max_epochs
    steps_per_epoch = 37  # any loader length: the schedule is a function of the fraction of the run
    total = epochs * steps_per_epoch
    assert o.schedule == "slowfast_cosine"
    for epoch in (0.0, 1.5, o.warmup_epochs / 2, o.warmup_epochs, epochs / 2, 0.8 * epochs, epochs - 0.5):
        step = round(epoch * steps_per_epoch)
        ours = o.lr * lr_factor(o, step, total, epochs)
        official = pyslowfast_lr(step / steps_per_epoch, o.lr, epochs, o.warmup_epochs, o.warmup_start_lr, o.final_lr)
        assert ours == pytest.approx(official, rel=1e-9, abs=1e-12), (name, epoch)


@pytest.mark.parametrize("name", FULL_SLOWFAST)
def test_clips_are_timed_at_pyslowfasts_30_fps(name):
    """PySlowFast decodes at TARGET_FPS 30: a 16×4 clip spans 64/30 = 2.13 s at any source rate (UCF101 is
    25 fps: 2.56 s when the stride counted source frames)."""
    cfg = load_pretrain_config(name)
    m = cfg.method
    method = METHODS[m.name](cfg)
    plan = method.make_plan()
    for fps in (25.0, 29.97, 30.0):
        sel = plan.sample(VideoShape(int(60 * fps), fps), np.random.default_rng(0))
        frames = sel.views["clip_1"].frame_indices
        assert (frames[-1] - frames[0]) / fps == pytest.approx((m.num_frames - 1) * m.stride / 30, abs=1 / fps)
    contract = method.input_contract()
    assert contract.fps == pytest.approx(30 / m.stride) and contract.stride is None


@pytest.mark.parametrize("name, side", [(n, s) for n in FULL_SLOWFAST if "slowr18" in n
                                        for s in ([14] if "ucf101" in n else [7])])
def test_slow_r18_feature_map_per_preset(name, side):
    """The UCF101 Slow config uses r3d_stem (no max-pool): 8×14×14 at 224²; the K400 one pools: 8×7×7."""
    cfg = load_pretrain_config(name)
    m = cfg.method
    kwargs = dict(m.backbone_kwargs)
    from vidssl.models.backbones import build_backbone

    encoder = build_backbone(m.backbone, **{**kwargs, "width": 4})  # the stem decides the map, not the width
    with torch.no_grad():
        _, features = encoder(torch.zeros(1, 3, m.num_frames, m.crop_size, m.crop_size), return_features=True)
    assert tuple(features.shape[2:]) == (8, side, side)


@pytest.mark.parametrize("name", [n for n in FULL_SLOWFAST if n.startswith("fgkvmem_") and "slowr18_k400" in n])
def test_slow_r18_k400_predictor_input_is_one_bias_free_linear(name):
    """NUM_MLP_LAYERS_IN: 1 in the Slow-R18 K400 config: φ is one Linear(256→256, no bias), not a 2-layer MLP."""
    cfg = load_pretrain_config(name, ["method.num_slots=8", "method.num_concepts=8", "method.backbone_kwargs={width: 4}"])
    method = METHODS["fgkvmem"](cfg)
    phi = method.predictor.input_proj
    assert isinstance(phi, nn.Linear) and phi.bias is None and tuple(phi.weight.shape) == (256, 256)
    others = load_pretrain_config(name.replace("k400", "ucf101"), ["method.num_slots=8", "method.num_concepts=8",
                                                                   "method.backbone_kwargs={width: 4}"])
    two_layer = METHODS["fgkvmem"](others).predictor.input_proj
    assert sum(p.numel() for p in two_layer.parameters()) - phi.weight.numel() == 256 * 256 + 2 * 256 + 256
