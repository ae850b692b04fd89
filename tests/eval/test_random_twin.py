"""``--random-init``: the same encoder randomly initialised, fed the pretrained encoder's own views."""

from __future__ import annotations

import pytest
import torch

from vidssl import models
from vidssl.cli import main
from vidssl.errors import UserError
from vidssl.eval.features import load_eval_encoder, protocol_for
from vidssl.models.contract import InputContract

KWARGS = {"width": 4, "residual_frames": True}
# GDT's tiny geometry: 32² crops of a 40² canvas, every 3rd frame; the demo protocol's defaults are 56/64/2
CONTRACT = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=8, stride=3, canvas=40, crop_size=32,
                         input_transform="residual_frames", eval_views="demo")


@pytest.fixture
def trained(tmp_path):
    """An encoder file as a pretraining run writes it (weights moved away from their init, a contract)."""
    torch.manual_seed(123)
    encoder = models.build_random_encoder("r3d18_fgkv_tiny", **KWARGS)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.5)
    return models.save_encoder(encoder, tmp_path / "encoder.safetensors", "r3d18_fgkv_tiny", KWARGS, CONTRACT)


def test_random_twin_keeps_architecture_and_contract_and_draws_new_weights(trained):
    pretrained, pretrained_info = load_eval_encoder(trained)
    twin, info = load_eval_encoder(trained, random_init=True, seed=3)
    assert (twin.backbone_name, twin.backbone_kwargs, twin.input_contract) == ("r3d18_fgkv_tiny", KWARGS, CONTRACT)
    assert info.source.startswith("random:r3d18_fgkv_tiny") and str(trained) in info.source
    assert info.contract == CONTRACT.to_dict() and info.hash != pretrained_info.hash
    assert not any(p.requires_grad for p in twin.parameters()) and not twin.training
    for (name, a), b in zip(twin.state_dict().items(), pretrained.state_dict().values()):
        if a.is_floating_point() and a.numel() > 1 and "weight" in name and "bn" not in name:
            assert not torch.equal(a, b), name


def test_random_twin_is_the_seeded_random_backbone_and_the_seed_matters(trained):
    twin, info = load_eval_encoder(trained, random_init=True, seed=3)
    by_name, _ = load_eval_encoder(backbone="r3d18_fgkv_tiny", backbone_kwargs=KWARGS, seed=3)
    other, other_info = load_eval_encoder(trained, random_init=True, seed=4)
    state, named, drawn = twin.state_dict(), by_name.state_dict(), other.state_dict()
    assert all(torch.equal(state[k], named[k]) for k in state)  # the draw `vidssl demo` compares against
    assert any(not torch.equal(state[k], drawn[k]) for k in state) and other_info.hash != info.hash


def test_random_twin_is_evaluated_with_the_pretrained_views(trained):
    pretrained, _ = load_eval_encoder(trained)
    twin, _ = load_eval_encoder(trained, random_init=True, seed=0)
    by_name, _ = load_eval_encoder(backbone="r3d18_fgkv_tiny", backbone_kwargs=KWARGS, seed=0)
    chosen = protocol_for(twin, None, default="fgkvmem").protocol
    assert chosen == protocol_for(pretrained, None, default="fgkvmem").protocol
    assert (chosen.crop_size, chosen.canvas, chosen.stride) == (32, (40, 40), 3)
    plain = protocol_for(by_name, "demo", default="fgkvmem").protocol  # what `--backbone NAME --views demo` gets
    assert (plain.crop_size, plain.canvas, plain.stride) == (56, (64, 64), 2)


def test_random_init_needs_a_checkpoint(tmp_path, capsys):
    with pytest.raises(UserError, match="needs --checkpoint"):
        load_eval_encoder(backbone="r3d18_fgkv_tiny", random_init=True)
    code = main(["eval", "knn", "--backbone", "r3d18_fgkv_tiny", "--random-init", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--random-init takes the architecture and views of --checkpoint" in err
    assert err.count("\n") == 1, err


def test_eval_knn_random_init_runs_on_the_checkpoint_views(trained, demo_root, tmp_path):
    import json

    out = tmp_path / "knn_random"
    code = main(["eval", "knn", "--checkpoint", str(trained), "--random-init", "--seed", "2", "--data", str(demo_root),
                 "--out", str(out), "--no-cache", "--quiet", "--k", "3", "--num-workers", "0"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["source"].startswith("random:r3d18_fgkv_tiny")
    assert (report["views"]["crop_size"], report["views"]["canvas"], report["views"]["stride"]) == (32, [40, 40], 3)
