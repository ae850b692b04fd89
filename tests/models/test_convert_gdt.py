"""GDT's released checkpoints: a synthetic file with the official key names and shapes loads, without
executing pickled code, into vidssl encoders that compute what GDT's networks compute."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.video import r2plus1d_18

from vidssl.errors import UserError
from vidssl.models import load_encoder
from vidssl.models.convert_gdt import convert_gdt_checkpoint, read_gdt_checkpoint


def gdt_networks():
    """GDT's ``video_network.base`` (vmz R(2+1)D-18 = torchvision's, fc removed) and ``audio_network.base``
    (torchvision ResNet with BasicBlock [1,1,1,1] and a 1-channel conv1; its fc is kept but unused)."""
    torch.manual_seed(0)
    video = r2plus1d_18()
    video.fc = nn.Identity()
    audio = tv_resnet.ResNet(tv_resnet.BasicBlock, [1, 1, 1, 1])
    audio.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for net in (video, audio):  # non-trivial BN statistics, so eval-mode outputs depend on them
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return video.eval(), audio.eval()


def head_state(prefix: str, in_dim: int) -> dict:
    """``model.py:MLP`` keys: block_forward.{2: Linear(no bias), 4: BatchNorm1d, 8: Linear}."""
    return {f"{prefix}.block_forward.2.weight": torch.randn(512, in_dim),
            f"{prefix}.block_forward.4.weight": torch.ones(512), f"{prefix}.block_forward.4.bias": torch.zeros(512),
            f"{prefix}.block_forward.4.running_mean": torch.zeros(512),
            f"{prefix}.block_forward.4.running_var": torch.ones(512),
            f"{prefix}.block_forward.4.num_batches_tracked": torch.tensor(0),
            f"{prefix}.block_forward.8.weight": torch.randn(256, 512), f"{prefix}.block_forward.8.bias": torch.zeros(256)}


def write_av_checkpoint(path, video, audio, module_prefix: str = ""):
    state = {f"{module_prefix}video_network.base.{k}": v for k, v in video.state_dict().items()}
    state.update({f"{module_prefix}audio_network.base.{k}": v for k, v in audio.state_dict().items()})
    state.update(head_state("mlp_v", 512))
    state.update(head_state("mlp_a", 512))
    scheduler_like = argparse.Namespace(multiplier=64, total_epoch=10)
    torch.save({"model": state, "epoch": 201, "args": argparse.Namespace(hypothesis=8, nce_t=0.07),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.64, "params": [0, 1]}]},
                "lr_scheduler": {"multiplier": 64, "extra": scheduler_like}}, path)


@pytest.fixture(scope="module")
def networks():
    return gdt_networks()


def test_av_checkpoint_converts_to_encoders_that_match_gdt(networks, tmp_path):
    video, audio = networks
    path = tmp_path / "gdt_K400.pth"
    write_av_checkpoint(path, video, audio, module_prefix="module.")
    data = read_gdt_checkpoint(path)
    assert data["args"]["hypothesis"] == 8 and data["epoch"] == 201
    written = convert_gdt_checkpoint(path, tmp_path / "out")
    assert set(written) == {"video", "audio"}
    ours = load_encoder(tmp_path / "out")
    assert ours.backbone_name == "r2plus1d18_tv"
    contract = ours.input_contract
    assert (contract.num_frames, contract.fps, contract.crop_size, contract.mean) == (30, 30.0, 112, (0.45,) * 3)
    clip = torch.randn(2, 3, 8, 32, 32)
    spec = torch.randn(2, 1, 99, 40)  # vidssl: time × freq; GDT: freq × time
    ours_audio = load_encoder(written["audio"])
    audio.fc, fc = nn.Identity(), audio.fc  # GDT's ResNet-9 forward stops before its fc
    try:
        with torch.no_grad():
            torch.testing.assert_close(ours(clip), video(clip), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(ours_audio(spec), audio(spec.transpose(-1, -2)), rtol=1e-4, atol=1e-5)
    finally:
        audio.fc = fc


def test_video_text_checkpoint_keeps_only_the_video_encoder(networks, tmp_path):
    video, _ = networks
    state = {f"video_network.base.{k}": v for k, v in video.state_dict().items()}
    state.update({"text_network.word_embd.weight": torch.randn(20, 300), "text_network.fc1.weight": torch.randn(2048, 300),
                  "text_network.fc1.bias": torch.zeros(2048)})
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "gdt_HT100M.pth")
    written = convert_gdt_checkpoint(tmp_path / "gdt_HT100M.pth", tmp_path / "ht")
    assert set(written) == {"video"}
    assert load_encoder(tmp_path / "ht").input_contract.mean == (0.0,) * 3  # HT100M: pixels in [0, 1], no mean/std


class Exploit:
    """What a tampered checkpoint would carry: unpickling it runs a shell command."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_tampered_checkpoint_is_refused_without_running_its_code(networks, tmp_path):
    video, audio = networks
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"video_network.base.stem.0.weight": torch.zeros(1)}, "payload": Exploit(target)}, path)
    with pytest.raises(UserError, match="safely"):
        read_gdt_checkpoint(path)
    assert not target.exists()
    with pytest.raises(UserError, match="does not exist"):
        read_gdt_checkpoint(tmp_path / "missing.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a GDT checkpoint"):
        read_gdt_checkpoint(tmp_path / "other.pth")
    bad = {"model": {"video_network.base.stem.0.weight": torch.zeros(3)}}
    torch.save(bad, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="missing"):
        convert_gdt_checkpoint(tmp_path / "partial.pth", tmp_path / "partial")
