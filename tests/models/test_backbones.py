"""Backbone zoo: shapes, parameter counts against the seeds, architecture facts, the TSM shift."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torchvision
from torch import nn

from vidssl.errors import ConfigError
from vidssl.models.backbones import BACKBONES, build_backbone
from vidssl.models.backbones.resnet3d import count_parameters, r2plus1d18_fgkv, r3d18_fgkv, slow_r18
from vidssl.models.backbones.tsm import TSMResNet, _tf_same_pads, temporal_shift

TINY = sorted(name for name in BACKBONES if name.endswith("_tiny"))
FULL = sorted(name for name in BACKBONES if not name.endswith("_tiny"))


def tiny_input(name: str, batch: int = 2) -> torch.Tensor:
    """The input layout of each family: spectrogram, image or clip."""
    if name.startswith("audio"):
        return torch.randn(batch, 1, 64, 40)
    if name.startswith("image"):
        return torch.randn(batch, 3, 64, 64)
    return torch.randn(batch, 3, 8, 64, 64)


def meta_count(name: str, **kwargs) -> int:
    """Parameters of a full-size backbone, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_parameters(build_backbone(name, **kwargs))


def test_every_family_has_a_tiny_variant():
    families = {"r3d18_fgkv", "r2plus1d18_fgkv", "slow_r18", "r3d18_tv", "r2plus1d18_tv", "swin3d", "image_resnet"}
    for family in families:
        assert any(name.startswith(family) for name in TINY), family
    assert {"tsm_resnet_tiny", "audio_resnet9_tiny", "audio_resnet50_tiny"} <= set(TINY)


@pytest.mark.parametrize("name", TINY)
def test_tiny_shapes_pooling_and_gradients(name):
    torch.manual_seed(0)
    model = build_backbone(name)
    x = tiny_input(name)
    torch.manual_seed(1)  # same stochastic-depth draws (Swin) in both calls
    embedding = model(x)
    assert embedding.shape == (2, model.embed_dim)
    torch.manual_seed(1)
    embedding2, fmap = model(x, return_features=True)
    assert fmap.shape[:2] == (2, model.embed_dim)
    assert fmap.dim() == (4 if name.startswith(("audio", "image")) else 5)
    # The embedding is the mean of the returned map (train-mode BN: same batch, same statistics),
    # except for encoders that pool with a transformer (STiCA): theirs is the pooling of the map.
    pooled = model.pool(fmap) if getattr(model, "pooling", None) is not None else fmap.flatten(2).mean(-1)
    torch.testing.assert_close(embedding2, pooled, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(embedding, embedding2, rtol=1e-4, atol=1e-5)
    embedding2.pow(2).sum().backward()
    # SwinBEVT's mask token and image patch embedding act only on masked inputs / images
    optional = ("mask_token", "patch_embed_2d.") if name.startswith("swin_bevt") else ()
    no_grad = [n for n, p in model.named_parameters()
               if not n.startswith(optional) and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    assert sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("name", [n for n in TINY if not n.startswith(("audio", "image"))])
def test_tiny_video_forward_is_fast(name):
    model = build_backbone(name).eval()
    x = tiny_input(name)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
        elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{name}: {elapsed:.2f}s for a 2×3×8×64×64 forward"


def test_unknown_backbone_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'tsm_resnet50'"):
        build_backbone("tsm_resnet_50")
    with pytest.raises(ConfigError, match="unknown backbone 'nonsense'"):
        build_backbone("nonsense")


# ------------------------------------------------------------------------------------------
# parameter counts
# ------------------------------------------------------------------------------------------

# Measured once and pinned: a change of architecture shows up here first.
EXPECTED_PARAMS = {
    "r3d18_fgkv": 26_086_336,
    "r2plus1d18_fgkv": 14_365_303,
    "slow_r18": 20_023_872,
    "r3d18_tv": 33_166_272,
    "r2plus1d18_tv": 31_300_125,
    "tsm_resnet18": 11_174_720,
    "tsm_resnet50": 23_500_352,
    "tsm_resnet50_x2": 93_891_712,
    "swin3d_t": 27_850_470,
    "swin3d_s": 49_509_078,
    "swin3d_b": 87_638_984,
    "swin_bevt_b": 87_645_640,  # swin3d_b + BEVT's mask token (128) + 2-D patch embedding (6_528)
    "audio_resnet9": 4_899_520,
    "audio_resnet18": 11_170_240,
    "audio_resnet50": 23_494_080,
    "image_resnet50": 23_508_032,
    "r2plus1d18_stica": 36_554_269,  # r2plus1d18_tv + 2 post-LN blocks (q/k projections, FFN 2048)
}


def test_pinned_parameter_counts_cover_every_full_backbone():
    assert set(EXPECTED_PARAMS) == set(FULL)


@pytest.mark.parametrize("name", FULL)
def test_parameter_count(name):
    assert meta_count(name) == EXPECTED_PARAMS[name]


def test_fgkvmempred_counts_against_the_seed_table():
    """README: R3D-18 31.8 M, R(2+1)D-18 14.4 M, Slow-R18 20.2 M (see resnet3d's docstring)."""
    assert meta_count("r2plus1d18_fgkv") / 1e6 == pytest.approx(14.4, abs=0.05)
    assert meta_count("slow_r18") / 1e6 == pytest.approx(20.2, rel=0.01)
    # R3D-18: the code as released builds 26.1 M (MODIFY_LAST) or 33.2 M (standard res5); neither
    # is the README's 31.8 M, which the module docstring records as nominal.
    assert meta_count("r3d18_fgkv") / 1e6 == pytest.approx(26.09, abs=0.01)
    assert meta_count("r3d18_fgkv", modify_last=False) == EXPECTED_PARAMS["r3d18_tv"]
    # A real R(2+1)D-18 (two blocks per stage), which the original code never builds:
    assert meta_count("r2plus1d18_fgkv", blocks=(2, 2, 2, 2)) > 2 * EXPECTED_PARAMS["r2plus1d18_fgkv"]


@pytest.mark.parametrize(
    ("name", "tv_builder"),
    [
        ("r3d18_tv", torchvision.models.video.r3d_18),
        ("r2plus1d18_tv", torchvision.models.video.r2plus1d_18),
        ("swin3d_t", torchvision.models.video.swin3d_t),
        ("swin3d_s", torchvision.models.video.swin3d_s),
        ("swin3d_b", torchvision.models.video.swin3d_b),
        ("image_resnet50", torchvision.models.resnet50),
    ],
)
def test_torchvision_based_backbones_have_torchvision_state_dicts(name, tv_builder):
    """Same keys and shapes as torchvision's model minus the classifier, so its checkpoints load."""
    with torch.device("meta"):
        ours = build_backbone(name).state_dict()
        theirs = {k: v for k, v in tv_builder(weights=None).state_dict().items() if not k.startswith(("fc.", "head."))}
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_r3d18_tv_computes_what_torchvision_computes():
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18(weights=None)
    reference.fc = nn.Identity()
    ours = build_backbone("r3d18_tv")
    ours.load_state_dict(reference.state_dict(), strict=False)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


# ------------------------------------------------------------------------------------------
# FGKVMemPred architecture facts (reference §2.5)
# ------------------------------------------------------------------------------------------


def test_fgkv_feature_map_geometry():
    def feature_map(model, shape):
        with torch.no_grad():
            return model.eval()(torch.randn(shape), return_features=True)[1]

    r3d = feature_map(r3d18_fgkv(width=8), (1, 3, 16, 112, 112))
    r3d_plain = feature_map(r3d18_fgkv(width=8, modify_last=False), (1, 3, 16, 112, 112))
    r21d = feature_map(r2plus1d18_fgkv(width=8), (1, 3, 16, 112, 112))
    slow = feature_map(slow_r18(width=8), (1, 3, 8, 224, 224))
    slow_ucf = feature_map(slow_r18(width=8, stem_pool=False), (1, 3, 8, 112, 112))
    assert r3d.shape[2:] == (4, 7, 7)  # MODIFY_LAST: no temporal stride in res5
    assert r3d_plain.shape[2:] == (2, 7, 7)
    assert r21d.shape[2:] == (2, 7, 7)
    assert slow.shape[2:] == (8, 7, 7)  # never a temporal stride
    assert slow_ucf.shape[2:] == (8, 7, 7)  # no stem pool: 112² ends at 7² too


def test_fgkv_modify_last_block_is_a_single_dilated_conv():
    model = r3d18_fgkv(width=8)
    branch2 = model.res5[0].branch2
    assert isinstance(branch2, nn.Conv3d)
    assert branch2.dilation == (2, 1, 1) and branch2.stride == (1, 2, 2) and branch2.padding == (2, 1, 1)
    assert model.res5[0].branch1.stride == (1, 2, 2)
    assert model.res4[0].branch2.a.stride == (2, 2, 2)  # int stride on all three axes


def test_fgkv_r2plus1d_uses_one_block_per_stage_and_the_83_stem():
    with torch.device("meta"):
        model = r2plus1d18_fgkv()
    assert [len(stage) for stage in (model.res2, model.res3, model.res4, model.res5)] == [1, 1, 1, 1]
    assert model.stem.conv1.out_channels == 83
    block = model.res3[0].branch2
    assert block.a.out_channels == (64 * 128 * 27) // (64 * 9 + 3 * 128)
    assert block.b.out_channels == (128 * 128 * 27) // (128 * 9 + 3 * 128)


def test_slow_temporal_kernels():
    model = slow_r18(width=8)
    kernels = [stage[0].branch2.a.kernel_size[0] for stage in (model.res2, model.res3, model.res4, model.res5)]
    assert kernels == [1, 1, 3, 3]


# ------------------------------------------------------------------------------------------
# TSM
# ------------------------------------------------------------------------------------------


def test_temporal_shift_is_exactly_bravess_shift():
    batch, frames, channels = 2, 4, 16
    n = channels // 8
    x = torch.randn(batch * frames, channels, 3, 3)
    out = temporal_shift(x, num_frames=frames).reshape(batch, frames, channels, 3, 3)
    clips = x.reshape(batch, frames, channels, 3, 3)
    for t in range(frames):
        # channels [0, n): the next frame's last n channels; zeros after the last frame
        expected_next = clips[:, t + 1, channels - n :] if t + 1 < frames else torch.zeros_like(clips[:, t, :n])
        torch.testing.assert_close(out[:, t, :n], expected_next, rtol=0, atol=0)
        # channels [C-n, C): the previous frame's first n channels; zeros before the first frame
        expected_previous = clips[:, t - 1, :n] if t > 0 else torch.zeros_like(clips[:, t, :n])
        torch.testing.assert_close(out[:, t, channels - n :], expected_previous, rtol=0, atol=0)
        # the rest untouched
        torch.testing.assert_close(out[:, t, n : channels - n], clips[:, t, n : channels - n], rtol=0, atol=0)


def test_temporal_shift_moves_a_quarter_and_keeps_clips_apart():
    frames, channels = 3, 8
    x = torch.arange(2 * frames, dtype=torch.float32).repeat_interleave(channels).reshape(2 * frames, channels, 1, 1)
    out = temporal_shift(x, frames, fold_div=8).squeeze()
    # frame value v = clip*3 + t; channel 0 takes t+1, channel 7 takes t-1, zeros at clip ends.
    assert out[:, 0].tolist() == [1, 2, 0, 4, 5, 0]
    assert out[:, 7].tolist() == [0, 0, 1, 0, 3, 4]
    assert out[:, 1:7].eq(x.squeeze()[:, 1:7]).all()
    # fewer channels than fold_div: nothing to shift
    small = torch.randn(4, 4, 2, 2)
    assert torch.equal(temporal_shift(small, 2), small)


def test_temporal_shift_rejects_a_bad_frame_count():
    with pytest.raises(ValueError, match="num_frames=3"):
        temporal_shift(torch.randn(8, 16, 2, 2), num_frames=3)


def test_tsm_mixes_neighbouring_frames_only_through_the_shift():
    """In eval mode, changing frame 0 changes other frames' features only when the shift is on."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 32, 32)
    x_changed = x.clone()
    x_changed[:, :, 0] += 1.0
    for fold_div, mixes in ((8, True), (None, False)):
        model = TSMResNet(depth=50, width_mult=0.125, blocks=(1, 1, 1, 1), fold_div=fold_div).eval()
        with torch.no_grad():
            _, a = model(x, return_features=True)
            _, b = model(x_changed, return_features=True)
        other_frames_changed = not torch.allclose(a[:, :, 1:], b[:, :, 1:])
        assert other_frames_changed == mixes
        assert not torch.allclose(a[:, :, 0], b[:, :, 0])


def test_tsm_embedding_is_spatial_then_temporal_mean_and_widths_scale():
    model = build_backbone("tsm_resnet_tiny").eval()
    with torch.no_grad():
        embedding, fmap = model(torch.randn(2, 3, 4, 32, 32), return_features=True)
    torch.testing.assert_close(embedding, fmap.mean(dim=(3, 4)).mean(dim=2))
    assert fmap.shape == (2, 256, 4, 1, 1)
    with torch.device("meta"):
        assert build_backbone("tsm_resnet50").embed_dim == 2048
        assert build_backbone("tsm_resnet50_x2").embed_dim == 4096
        x2 = build_backbone("tsm_resnet50_x2")
        assert build_backbone("tsm_resnet18").embed_dim == 512
    assert x2.tsm_resnet_stem.out_channels == 128
    assert x2.tsm_resnet_unit_0.block_0.conv_0.out_channels == 128  # bottleneck = out/4


def test_tsm_uses_haiku_names_for_the_checkpoint_converter():
    with torch.device("meta"):
        names = set(build_backbone("tsm_resnet50").state_dict())
    for expected in (
        "tsm_resnet_stem.weight",
        "tsm_resnet_unit_0.block_0.shortcut_conv.weight",
        "tsm_resnet_unit_0.block_0.batch_norm.running_mean",
        "tsm_resnet_unit_2.block_5.conv_2.weight",
        "tsm_resnet_unit_3.block_2.batch_norm_2.weight",
        "batch_norm.weight",
    ):
        assert expected in names
    assert "tsm_resnet_unit_0.block_1.shortcut_conv.weight" not in names  # projection only in block 0
    assert not any(".bias" in n and "batch_norm" not in n for n in names)  # convs have no bias


def test_tf_same_padding_matches_tensorflow_rules():
    assert _tf_same_pads((224, 224), (7, 7), (2, 2)) == [2, 3, 2, 3]
    assert _tf_same_pads((56, 56), (3, 3), (2, 2)) == [0, 1, 0, 1]
    assert _tf_same_pads((57, 56), (3, 3), (2, 2)) == [0, 1, 1, 1]
    assert _tf_same_pads((56, 56), (1, 1), (2, 2)) == [0, 0, 0, 0]
    torch.manual_seed(0)
    symmetric = TSMResNet(width_mult=0.125, blocks=(1, 1, 1, 1)).eval()
    haiku = TSMResNet(width_mult=0.125, blocks=(1, 1, 1, 1), tf_same_padding=True).eval()
    haiku.load_state_dict(symmetric.state_dict())
    x = torch.randn(1, 3, 2, 64, 64)
    with torch.no_grad():
        a, b = symmetric(x), haiku(x)
    assert a.shape == b.shape and not torch.allclose(a, b)  # same shapes, one-pixel offset


# ------------------------------------------------------------------------------------------
# Swin, audio, image
# ------------------------------------------------------------------------------------------


def test_swin_mask_token_replaces_masked_tokens():
    torch.manual_seed(0)
    model = build_backbone("swin3d_tiny", mask_token=True).eval()
    x1, x2 = torch.randn(1, 3, 8, 64, 64), torch.randn(1, 3, 8, 64, 64)
    grid = (1, 4, 16, 16)  # T/2, H/4, W/4
    with torch.no_grad():
        everything_masked = torch.ones(grid, dtype=torch.bool)
        torch.testing.assert_close(model(x1, mask=everything_masked), model(x2, mask=everything_masked))
        nothing_masked = torch.zeros(grid, dtype=torch.bool)
        torch.testing.assert_close(model(x1, mask=nothing_masked), model(x1))
        stages = model.forward_stages(x1)
    assert [s.shape[-1] for s in stages] == [16, 32, 64, 128]
    assert [tuple(s.shape[1:4]) for s in stages] == [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)]
    with pytest.raises(ValueError, match="patch-token grid"):
        model(x1, mask=torch.ones(1, 4, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask_token=True"):
        build_backbone("swin3d_tiny")(x1, mask=everything_masked)


def test_swin_b_is_bevts_configuration():
    with torch.device("meta"):
        model = build_backbone("swin3d_b", stochastic_depth_prob=0.3)
    assert model.embed_dim == 1024
    assert model.patch_embed.proj.kernel_size == (2, 4, 4)
    table = model.features[0][0].attn.relative_position_bias_table
    assert table.shape == (15 * 13 * 13, 4)
    assert model.features[6][-1].stochastic_depth.p == pytest.approx(0.3)  # linear over the 24 blocks


def test_flow_input_channels():
    for name in ("r3d18_fgkv_tiny", "r2plus1d18_tv_tiny", "tsm_resnet_tiny", "swin3d_tiny"):
        model = build_backbone(name, in_channels=2)
        assert model(torch.randn(1, 2, 4, 32, 32)).shape == (1, model.embed_dim)


def test_audio_nets_take_time_by_freq_spectrograms():
    gdt = build_backbone("audio_resnet9")
    assert gdt.conv1.in_channels == 1 and gdt.embed_dim == 512
    with torch.device("meta"):
        brave = build_backbone("audio_resnet50")
    assert brave.initial_conv.in_channels == 1 and brave.embed_dim == 2048
    assert "block_group_3.block_2.conv_2.weight" in brave.state_dict()
    # BraVe's spectrogram is 3072×80 (10.24 s × 80 mel bins); the tiny net handles a short one.
    tiny = build_backbone("audio_resnet50_tiny").eval()
    with torch.no_grad():
        _, fmap = tiny(torch.randn(1, 1, 96, 80), return_features=True)
    assert fmap.shape == (1, 256, 3, 3)


def test_image_encoder_is_bassls_resnet50():
    model = build_backbone("image_resnet_tiny")
    last_bns = [block.bn3.weight for layer in (model.layer1, model.layer4) for block in layer]
    assert all(bool((w == 0).all()) for w in last_bns)  # zero_init_residual=True
    with torch.device("meta"):
        assert build_backbone("image_resnet50").embed_dim == 2048


def test_builder_kwargs_survive_json():
    """save_encoder stores kwargs as JSON (tuples become lists): builders must accept lists."""
    kwargs = json.loads(json.dumps({"blocks": (1, 1, 1, 1), "width_mult": 0.125}))
    assert build_backbone("tsm_resnet50", **kwargs).embed_dim == 256
    assert build_backbone("swin3d_tiny", **json.loads(json.dumps({"window_size": (2, 2, 2)}))).embed_dim == 128
    r21d_kwargs = json.loads(json.dumps({"width": 8, "blocks": (1, 1, 1, 1)}))
    assert build_backbone("r2plus1d18_fgkv", **r21d_kwargs).embed_dim == 64


def test_residual_frames_feed_the_backbone_frame_differences():
    torch.manual_seed(0)
    wrapped = build_backbone("r3d18_fgkv_tiny", residual_frames=True).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    expected = wrapped.backbone(x[:, :, 1:] - x[:, :, :-1])
    assert torch.equal(wrapped(x), expected)
    embedding, fmap = wrapped(x, return_features=True)
    assert embedding.shape == (2, wrapped.embed_dim)
    assert torch.equal(fmap, wrapped.backbone(x[:, :, 1:] - x[:, :, :-1], return_features=True)[1])
    # a static clip (any background, any colour) has no residual: every such clip embeds alike
    static = x[:, :, :1].expand(-1, -1, 8, -1, -1)
    assert torch.allclose(wrapped(static), wrapped(torch.zeros_like(static)), atol=1e-6)


def test_residual_frames_reject_single_frames_and_non_video_backbones():
    wrapped = build_backbone("r3d18_fgkv_tiny", residual_frames=True)
    with pytest.raises(ValueError, match="T ≥ 2"):
        wrapped(torch.randn(1, 3, 1, 32, 32))
    with pytest.raises(ConfigError, match="video backbones"):
        build_backbone("audio_resnet9_tiny", residual_frames=True)
