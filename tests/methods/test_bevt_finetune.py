"""BEVT fine-tuning (reference §3.9): the layer-wise lr decay table of the K400 config, the no-decay rule,
the EMA, and a run of `finetune` with the BEVT recipe on a SwinBEVT."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidssl.eval.finetune import FINETUNE_PRESETS, Classifier, finetune, finetune_config
from vidssl.eval.views import get_protocol
from vidssl.methods.bevt_finetune import ParamEMA, finetune_param_groups, swin_layer_exponents
from vidssl.models.backbones import build_backbone


def seed_k400_table() -> dict[str, int]:
    """``custom_keys`` of swin_base_patch244_window877_bevt_finetune_k400.py as exponents of 0.9."""
    table = {"norm": 1, "layers.3.blocks.1": 1, "layers.3.blocks.0": 2, "layers.2.downsample": 3}
    table.update({f"layers.2.blocks.{b}": 4 + (17 - b) for b in range(18)})
    table.update({"layers.1.downsample": 22, "layers.1.blocks.1": 23, "layers.1.blocks.0": 24, "layers.0.downsample": 25,
                  "layers.0.blocks.1": 26, "layers.0.blocks.0": 27, "patch_embed": 28})
    return table


def test_layer_decay_levels_are_the_seeds_28():
    assert swin_layer_exponents((2, 2, 18, 2)) == seed_k400_table()


def test_finetune_groups_decay_layers_and_spare_norms():
    backbone = build_backbone("swin_bevt_tiny")
    model = Classifier(backbone, 5, head_init="default")
    groups = finetune_param_groups(model, 1e-3, 0.05, layer_decay=0.9)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    top = len(swin_layer_exponents((1, 1, 2, 1)))  # 1+2+2+3+1 units; norm shares level 1
    assert lr_of[id(model.head.weight)] == (1e-3, 0.05)
    assert lr_of[id(backbone.patch_embed.proj.weight)][0] == pytest.approx(1e-3 * 0.9 ** (top - 1))
    assert lr_of[id(backbone.layers[3].blocks[0].mlp.fc1.weight)][0] == pytest.approx(1e-3 * 0.9)
    assert lr_of[id(backbone.norm.weight)] == (pytest.approx(1e-3 * 0.9), 0.0)
    assert lr_of[id(backbone.layers[0].blocks[0].norm1.weight)][1] == 0.0
    assert lr_of[id(backbone.layers[0].blocks[0].attn.relative_position_bias_table)][1] == 0.0
    ssv2 = finetune_param_groups(model, 5e-4, 0.05, backbone_lr_mult=0.1)
    lr_of = {id(p): g["lr"] for g in ssv2 for p in g["params"]}
    assert lr_of[id(backbone.layers[2].blocks[1].attn.qkv.weight)] == pytest.approx(5e-5)
    assert lr_of[id(model.head.bias)] == pytest.approx(5e-4)


def test_ema_follows_mmcv_warm_up():
    net = torch.nn.Linear(2, 1, bias=False)
    net.weight.data.fill_(0.0)
    ema = ParamEMA(net, momentum=0.0002, warm_up=100)
    net.weight.data.fill_(1.0)
    ema.update(net, step=0)  # m = min(0.0002, 1/100)
    assert float(ema.shadow["weight"][0, 0]) == pytest.approx(0.0002)
    target = torch.nn.Linear(2, 1, bias=False)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.shadow["weight"])


def test_presets_follow_the_seed():
    k400, ssv2 = FINETUNE_PRESETS["bevt"], FINETUNE_PRESETS["bevt_ssv2"]
    assert (k400.optimizer, k400.head_lr, k400.weight_decay, k400.layer_decay, k400.grad_clip, k400.drop_path) == \
        ("adamw", 3e-4, 1e-3, 0.9, 40.0, 0.3)
    assert (k400.epochs, k400.warmup_epochs, k400.batch_size, k400.dropout) == (60, 2.5, 64, 0.5)
    assert (ssv2.head_lr, ssv2.backbone_lr, ssv2.weight_decay, ssv2.label_smoothing, ssv2.drop_path) == \
        (5e-4, 5e-5, 0.05, 0.1, 0.4)
    assert ssv2.ema_momentum == 0.0002 and ssv2.grad_clip == 0.0
    k400_views, ssv2_views = get_protocol("bevt_k400"), get_protocol("bevt_ssv2")
    assert (k400_views.num_frames, k400_views.stride, k400_views.crop_size, k400_views.views_per_video) == (32, 2, 224, 12)
    assert ssv2_views.views_per_video == 3 and k400_views.mean == (0.485, 0.456, 0.406)
    assert finetune_config("bevt", ["label_smoothing=0.2"]).label_smoothing == 0.2


class _Colours(torch.utils.data.Dataset):
    """Class = the bright colour channel (train clips T×H×W×C, test K×T×H×W×C)."""

    def __init__(self, protocol, augmented):
        self.protocol, self.augmented = protocol, augmented

    def __len__(self):
        return 6

    def __getitem__(self, index):
        p, label = self.protocol, index % 3
        shape = (p.num_frames, *p.canvas, 3) if self.augmented else (p.temporal_clips, p.num_frames, *p.canvas, 3)
        clip = torch.full(shape, 30, dtype=torch.uint8)
        clip[..., label] = 220
        return {"video": {"clip": clip}, "label": torch.tensor(label), "index": torch.tensor(index)}


class _Manifest:
    class_names = ["r", "g", "b"]


def test_finetune_runs_the_bevt_recipe_on_a_swin(tmp_path):
    backbone = build_backbone("swin_bevt_tiny")
    before = backbone.patch_embed.proj.weight.detach().clone()
    cfg = dataclasses.replace(FINETUNE_PRESETS["bevt_tiny"], protocol="demo_quick", epochs=1, batch_size=3,
                              label_smoothing=0.1, ema_momentum=0.5, warmup_epochs=0.5)
    result = finetune(backbone, _Manifest(), 1, cfg, out_dir=tmp_path, device="cpu", progress=False,
                      dataset_factory=lambda manifest, protocol, split, fold, augmented, seed: _Colours(protocol, augmented))
    assert result.test_videos == 6 and 0.0 <= result.top1 <= 1.0
    assert not torch.equal(before, backbone.patch_embed.proj.weight)
    assert backbone.layers[-1].blocks[-1].drop_path.p == pytest.approx(0.1)


def test_the_command_line_takes_protocol_bevt():
    from vidssl.cli import build_parser

    args = build_parser().parse_args(["eval", "finetune", "--protocol", "bevt", "--checkpoint", "runs/x", "--data", "d",
                                      "--out", "o", "epochs=3"])
    assert args.preset == "bevt" and args.protocol == "finetune" and args.overrides == ["epochs=3"]


def test_bad_bevt_finetune_settings_are_refused(tmp_path):
    from vidssl.errors import ConfigError

    for change in ({"layer_decay": 0.0}, {"label_smoothing": 1.0}, {"ema_momentum": -0.1}, {"grad_clip": -1.0}):
        cfg = dataclasses.replace(FINETUNE_PRESETS["bevt_tiny"], **change)
        with pytest.raises(ConfigError, match="layer_decay"):
            finetune(build_backbone("swin_bevt_tiny"), _Manifest(), 1, cfg, out_dir=tmp_path, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="optimizer=adamw"):
        finetune(build_backbone("swin_bevt_tiny"), _Manifest(), 1, dataclasses.replace(FINETUNE_PRESETS["tiny"], layer_decay=0.9),
                 out_dir=tmp_path, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="no drop path"):
        from torch import nn

        class NoDropPath(nn.Module):
            embed_dim = 4

            def forward(self, x):
                return x.mean(dim=(2, 3, 4)).repeat(1, 2)[:, :4]

        finetune(NoDropPath(), _Manifest(), 1, dataclasses.replace(FINETUNE_PRESETS["bevt_tiny"], protocol="demo_quick"),
                 out_dir=tmp_path, device="cpu", progress=False,
                 dataset_factory=lambda manifest, protocol, split, fold, augmented, seed: _Colours(protocol, augmented))
