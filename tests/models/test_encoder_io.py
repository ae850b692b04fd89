"""Encoder files: save/load round trips (safetensors, run directory, Lightning .ckpt) and their errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidssl.errors import ConfigError, UserError
from vidssl.models import build_random_encoder, load_encoder, save_encoder


class ArbitraryObject:
    """A pickled object of an arbitrary class: ``weights_only=True`` refuses to load it."""


def trained_encoder(name: str = "r3d18_fgkv_tiny", **kwargs):
    """A tiny encoder whose BN statistics moved away from their init (so buffers are checked too)."""
    torch.manual_seed(0)
    model = build_random_encoder(name, **kwargs)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 4, 32, 32))
    return model.eval()


def assert_same_encoder(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_safetensors_round_trip_and_run_directory(tmp_path):
    model = trained_encoder()
    written = save_encoder(model, tmp_path / "run" / "encoder.safetensors", name="r3d18_fgkv_tiny", kwargs={})
    assert written.is_file()
    assert not list(written.parent.glob(".*tmp*"))  # the atomic write leaves nothing behind
    from_file = load_encoder(written)
    from_dir = load_encoder(tmp_path / "run")
    assert_same_encoder(model, from_file)
    assert_same_encoder(model, from_dir)
    assert from_file.backbone_name == "r3d18_fgkv_tiny" and from_file.backbone_kwargs == {}
    assert not from_file.training


def test_kwargs_round_trip_through_json(tmp_path):
    kwargs = {"width_mult": 0.125, "blocks": (1, 2, 1, 1), "fold_div": 4}
    model = trained_encoder("tsm_resnet50", **kwargs)
    save_encoder(model, tmp_path / "e.safetensors", name="tsm_resnet50", kwargs=kwargs)
    loaded = load_encoder(tmp_path / "e.safetensors")
    assert loaded.backbone_kwargs == {"width_mult": 0.125, "blocks": [1, 2, 1, 1], "fold_div": 4}
    assert_same_encoder(model, loaded)


def test_lightning_checkpoint(tmp_path):
    model = trained_encoder("r2plus1d18_fgkv_tiny")
    other = build_random_encoder("r3d18_fgkv_tiny")
    state = {f"encoder.{k}": v for k, v in model.state_dict().items()}
    state.update({f"target_encoder.{k}": torch.zeros_like(v) for k, v in other.state_dict().items()})
    state["probe.weight"] = torch.zeros(3, 64)
    ckpt = {
        "state_dict": state,
        "hyper_parameters": {"encoder": {"name": "r2plus1d18_fgkv_tiny", "kwargs": {}}, "num_classes": 3},
        "global_step": 7,
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    loaded = load_encoder(tmp_path / "last.ckpt")
    assert_same_encoder(model, loaded)
    assert loaded.backbone_name == "r2plus1d18_fgkv_tiny"


def test_random_encoder_is_reproducible_under_a_seed():
    torch.manual_seed(3)
    a = build_random_encoder("tsm_resnet_tiny")
    torch.manual_seed(3)
    b = build_random_encoder("tsm_resnet_tiny")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.backbone_name == "tsm_resnet_tiny"
    with pytest.raises(ConfigError, match="did you mean"):
        build_random_encoder("tsm_resnet_tinyy")


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


def test_missing_paths_are_user_errors_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "encoder.safetensors"
    with pytest.raises(UserError, match="nowhere"):
        load_encoder(missing)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(UserError, match="empty_run.*has no encoder.safetensors"):
        load_encoder(tmp_path / "empty_run")
    wrong = tmp_path / "weights.pt"
    wrong.write_bytes(b"x")
    with pytest.raises(UserError, match=r"weights.pt.*\.safetensors or a \.ckpt"):
        load_encoder(wrong)


def test_foreign_or_broken_files_are_user_errors(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="no 'backbone' metadata"):
        load_encoder(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="garbage.safetensors"):
        load_encoder(garbage)
    mismatched = tmp_path / "mismatched.safetensors"
    save_encoder(build_random_encoder("r3d18_fgkv_tiny"), mismatched, name="r3d18_fgkv_tiny")
    # Pretend the file was written for another width: the weights cannot fit.
    from safetensors import safe_open

    with safe_open(str(mismatched), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(mismatched), metadata={"backbone": "r3d18_fgkv_tiny", "kwargs": '{"width": 4}'})
    with pytest.raises((UserError, RuntimeError), match="size mismatch|does not match"):
        load_encoder(mismatched)
    unknown = tmp_path / "unknown.safetensors"
    save_file(tensors, str(unknown), metadata={"backbone": "r3d_18", "kwargs": "{}"})
    with pytest.raises(ConfigError, match="unknown backbone 'r3d_18'"):
        load_encoder(unknown)


def test_checkpoints_without_an_encoder_are_user_errors(tmp_path):
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}, "hyper_parameters": {}}, tmp_path / "a.ckpt")
    with pytest.raises(UserError, match="a.ckpt.*hyper_parameters\\['encoder'\\]"):
        load_encoder(tmp_path / "a.ckpt")
    spec = {"encoder": {"name": "r3d18_fgkv_tiny", "kwargs": {}}}
    torch.save({"state_dict": {"probe.weight": torch.zeros(1)}, "hyper_parameters": spec}, tmp_path / "b.ckpt")
    with pytest.raises(UserError, match="no 'encoder.\\*' weights"):
        load_encoder(tmp_path / "b.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": spec, "extra": ArbitraryObject()}, tmp_path / "c.ckpt")
    with pytest.raises(UserError, match="c.ckpt.*weights_only"):
        load_encoder(tmp_path / "c.ckpt")


def test_save_refuses_unknown_names_and_non_json_kwargs(tmp_path):
    model = build_random_encoder("audio_resnet9_tiny")
    with pytest.raises(UserError, match="not a registered backbone"):
        save_encoder(model, tmp_path / "e.safetensors", name="audio_resnet_9")
    with pytest.raises(UserError, match="JSON"):
        save_encoder(model, tmp_path / "e.safetensors", name="audio_resnet9_tiny", kwargs={"width": object()})
    assert not (tmp_path / "e.safetensors").exists()


def test_residual_frames_round_trip(tmp_path):
    kwargs = {"width": 4, "residual_frames": True}
    model = trained_encoder("r3d18_fgkv_tiny", **kwargs)
    save_encoder(model, tmp_path / "e.safetensors", name="r3d18_fgkv_tiny", kwargs=kwargs)
    loaded = load_encoder(tmp_path / "e.safetensors")
    assert loaded.backbone_kwargs == kwargs
    assert_same_encoder(model, loaded)
