"""Fine-tuning: GDT's schedule, presets, frozen-backbone variant (fake data, toy backbone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from vidssl.errors import ConfigError
from vidssl.eval.finetune import FINETUNE_PRESETS, Classifier, finetune, finetune_config, lr_multiplier
from vidssl.models.contract import InputContract


def test_gdt_schedule_matches_part_d():
    cfg = FINETUNE_PRESETS["gdt"]
    multipliers = [lr_multiplier(cfg, epoch) for epoch in range(12)]
    expected = [1.0, 4.5] + [8.0] * 5 + [0.4] * 4 + [0.02]
    assert multipliers == pytest.approx(expected)
    assert lr_multiplier(cfg, 1.5) == pytest.approx(4.5)  # stepped per epoch, as in the seed
    assert (cfg.head_lr, cfg.backbone_lr, cfg.weight_decay, cfg.epochs, cfg.clips_per_video) == (0.0025, 0.00025, 0.005, 12, 10)


def test_fgkvmem_schedule_is_warmup_cosine():
    cfg = FINETUNE_PRESETS["fgkvmem"]
    assert lr_multiplier(cfg, 0) * cfg.head_lr == pytest.approx(1e-3)
    assert lr_multiplier(cfg, cfg.epochs) == pytest.approx(0.0, abs=1e-9)
    assert lr_multiplier(cfg, 5) > lr_multiplier(cfg, 100) > lr_multiplier(cfg, 190)


def test_finetune_config_overrides_and_errors():
    assert finetune_config("gdt", ["epochs=3"]).epochs == 3
    with pytest.raises(ConfigError, match="did you mean 'gdt'"):
        finetune_config("gdtt")
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        finetune_config("gdt", ["epoch=3"])


class ToyBackbone(nn.Module):
    """1×1×1 conv (+ BatchNorm when ``bn``) + global mean: ``B×3×T×H×W`` -> ``B×4``."""

    embed_dim = 4

    def __init__(self, bn: bool = False):
        super().__init__()
        torch.manual_seed(0)  # a fixed init: the tests assert on training outcomes
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4) if bn else nn.Identity()

    def forward(self, x):
        return self.bn(self.conv(x)).mean(dim=(2, 3, 4))


class ColourDataset(torch.utils.data.Dataset):
    """Class = which colour channel is bright; K×T×H×W×C for test views, T×H×W×C for train clips."""

    def __init__(self, protocol, augmented, count=12):
        self.protocol, self.augmented, self.count = protocol, augmented, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        label = index % 3
        p = self.protocol
        shape = (p.num_frames, *p.canvas, 3) if self.augmented else (p.temporal_clips, p.num_frames, *p.canvas, 3)
        clip = torch.full(shape, 30, dtype=torch.uint8)
        clip[..., label] = 220
        return {"video": {"clip": clip}, "label": torch.tensor(label), "index": torch.tensor(index)}


class FakeManifest:
    class_names = ["r", "g", "b"]


def factory(manifest, protocol, split, fold, augmented, seed):
    return ColourDataset(protocol, augmented)


def small(preset, **changes):
    settings = dict(protocol="demo_quick", epochs=2, batch_size=4, clips_per_video=1, warmup_epochs=1)
    return dataclasses.replace(FINETUNE_PRESETS[preset], **{**settings, **changes})


def test_finetune_learns_and_updates_backbone(tmp_path):
    backbone = ToyBackbone()
    before = backbone.conv.weight.detach().clone()
    cfg = small("tiny", epochs=6, head_lr=0.2, backbone_lr=0.02, decay_epochs=(), eval_every_epoch_from=4)
    result = finetune(backbone, FakeManifest(), 1, cfg, out_dir=tmp_path, device="cpu", progress=False,
                      dataset_factory=factory)
    assert result.top1 == 1.0
    assert not torch.equal(before, backbone.conv.weight)
    assert list(result.top1_per_epoch) == [4, 5] and result.top1_best_epoch_on_test == 1.0
    assert result.numbers() == {"top1": 1.0, "top5": 1.0, "top1_best_epoch_on_test": 1.0, "test_videos": 12,
                                "excluded_videos": 0}
    assert result.confusion.trace() == 12


def test_frozen_backbone_variant_keeps_weights_and_bn_stats(tmp_path):
    backbone = ToyBackbone(bn=True)
    backbone.conv.weight.requires_grad_(False)  # as load_eval_encoder hands it over
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = small("fgkvmem_linear", head_lr=0.5, eval_every_epoch_from=0)  # mid-run tests must not unfreeze BN
    result = finetune(backbone, FakeManifest(), 1, cfg, out_dir=tmp_path, device="cpu", progress=False,
                      dataset_factory=factory)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    # A frozen random 1×1×1 conv keeps the colour channels apart: the head alone separates them.
    assert result.top1 == 1.0 and result.confusion.trace() == 12 and result.top1_per_epoch == {0: 1.0, 1: 1.0}


def test_bad_finetune_settings(tmp_path):
    with pytest.raises(ConfigError, match="head_lr > 0"):
        finetune(ToyBackbone(), FakeManifest(), 1, small("tiny", head_lr=0.0), out_dir=tmp_path, device="cpu",
                 progress=False, dataset_factory=factory)


def test_orthogonal_head_init():
    model = Classifier(ToyBackbone(), 3, head_init="orthogonal")
    weight = model.head.weight  # 3×4, orthonormal rows
    assert torch.allclose(weight @ weight.T, torch.eye(3), atol=1e-5)
    assert torch.count_nonzero(model.head.bias) == 0


def test_finetune_feeds_the_backbone_as_its_contract_says(tmp_path):
    seen = []

    def recording_factory(manifest, protocol, split, fold, augmented, seed):
        seen.append(protocol)
        return ColourDataset(protocol, augmented)

    backbone = ToyBackbone()
    backbone.input_contract = InputContract(mean=(0.0,) * 3, std=(1.0,) * 3, num_frames=3, stride=2, canvas=12,
                                            crop_size=10, eval_views="brave")
    finetune(backbone, FakeManifest(), 1, small("tiny", epochs=1), out_dir=tmp_path, device="cpu", progress=False,
             dataset_factory=recording_factory)
    assert seen and all(p.name == "demo_quick" for p in seen)  # the preset's views (the command may pass others)
    assert all(p.mean == (0.0,) * 3 and p.std == (1.0,) * 3 for p in seen)  # ...with the contract's normalisation
    assert all((p.num_frames, p.stride, p.canvas, p.crop_size) == (3, 2, (12, 12), 10) for p in seen)


def test_activation_checkpointing_fine_tunes_to_the_same_weights(tmp_path):
    """activation_checkpointing=true recomputes the backbone's blocks: the fine-tuned weights and BN
    statistics are the plain run's; a backbone without blocks, or a frozen one, is a ConfigError."""
    from vidssl.models import build_random_encoder
    from vidssl.models.activation_checkpointing import is_checkpointed

    states, wrapped = [], []
    for option in (False, True):
        torch.manual_seed(0)
        backbone = build_random_encoder("r3d18_fgkv_tiny")
        finetune(backbone, FakeManifest(), 1, small("tiny", epochs=1, activation_checkpointing=option),
                 out_dir=tmp_path / str(option), device="cpu", progress=False, dataset_factory=factory)
        states.append(backbone.state_dict())
        wrapped.append(sum(is_checkpointed(m) for m in backbone.modules()))
    assert wrapped == [0, 8]
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
    with pytest.raises(ConfigError, match=r"activation_checkpointing=true: backbone 'ToyBackbone'.*no trainable block"):
        finetune(ToyBackbone(bn=True), FakeManifest(), 1, small("tiny", activation_checkpointing=True),
                 out_dir=tmp_path / "toy", device="cpu", progress=False, dataset_factory=factory)
    with pytest.raises(ConfigError, match="freeze_backbone=true"):
        finetune(ToyBackbone(), FakeManifest(), 1, small("fgkvmem_linear", activation_checkpointing=True),
                 out_dir=tmp_path / "frozen", device="cpu", progress=False, dataset_factory=factory)
    assert finetune_config("tiny", ["activation_checkpointing=true"]).activation_checkpointing is True
