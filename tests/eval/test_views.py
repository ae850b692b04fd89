"""protocol_for: which view protocol and normalisation an encoder is evaluated with (its input contract); the BEVT SSv2 train view."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidssl.data import transforms as T
from vidssl.errors import ConfigError, UserError
from vidssl.eval.features import PROTOCOLS, protocol_for
from vidssl.eval.views import ViewProtocol, build_train_augment, contract_normalisation, get_protocol
from vidssl.models.contract import InputContract

BRAVE = InputContract(mean=(0.0,) * 3, std=(1.0,) * 3, num_frames=32, stride=2, crop_size=224, canvas=256,
                      eval_views="brave")
RHO_BYOL = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=8, stride=4, crop_size=112, canvas=128,
                         eval_views="fgkvmem")
DEMO = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=6, stride=3, crop_size=32, canvas=40,
                     input_transform="residual_frames", eval_views="demo")


def encoder_with(contract):
    module = nn.Identity()
    module.input_contract = contract
    return module


def test_without_a_contract_the_named_protocol_is_used_unchanged():
    for encoder in (nn.Identity(), encoder_with(None), None):
        choice = protocol_for(encoder, default="brave")
        assert choice.protocol == PROTOCOLS["brave"] and choice.views_from == "default" and choice.notes == ()
        assert choice.record() == {"input_contract": "none", "views_from": "default", "notes": []}
    explicit = protocol_for(nn.Identity(), "demo", default="brave", temporal_clips=1)
    assert explicit.protocol.name == "demo" and explicit.protocol.temporal_clips == 1
    assert explicit.protocol.num_frames == PROTOCOLS["demo"].num_frames and explicit.views_from == "--views"


def test_brave_contract_defaults_to_brave_views_with_its_normalisation():
    choice = protocol_for(encoder_with(BRAVE), default="fgkvmem")  # linear's default would be fgkvmem
    assert choice.protocol.name == "brave" and choice.views_from == "contract"
    assert choice.protocol.mean == (0.0,) * 3 and choice.protocol.std == (1.0,) * 3
    assert choice.protocol.crop_layout == "diagonal" and choice.notes == ()
    assert choice.record()["input_contract"] == BRAVE.to_dict()


def test_explicit_views_change_geometry_never_normalisation():
    choice = protocol_for(encoder_with(BRAVE), "fgkvmem")
    fgkvmem = PROTOCOLS["fgkvmem"]
    assert (choice.protocol.num_frames, choice.protocol.stride, choice.protocol.canvas, choice.protocol.crop_size) == (
        fgkvmem.num_frames, fgkvmem.stride, fgkvmem.canvas, fgkvmem.crop_size)
    assert choice.protocol.mean == (0.0,) * 3 and choice.protocol.std == (1.0,) * 3
    (note,) = choice.notes
    assert "--views fgkvmem normalises with mean 0.45 / std 0.225" in note and "contract wins: mean 0 / std 1" in note


def test_rho_byol_contract_overrides_the_svm_default():
    choice = protocol_for(encoder_with(RHO_BYOL), default="brave")  # vidssl eval svm's default without a contract
    assert choice.protocol.name == "fgkvmem" and choice.protocol.crop_layout == "long_side"
    assert choice.protocol.mean == (0.45,) * 3 and choice.protocol.std == (0.225,) * 3
    # Paper protocols keep their own clip geometry (the contract's 8 frames apply to the demo protocols only).
    assert choice.protocol.num_frames == 16


@pytest.mark.parametrize("views", ["demo", "demo_quick"])
def test_demo_geometry_comes_from_the_contract(views):
    choice = protocol_for(encoder_with(DEMO), views, temporal_clips=3)
    p = choice.protocol
    assert (p.num_frames, p.stride, p.canvas, p.crop_size) == (6, 3, (40, 40), 32)
    assert p.temporal_clips == 3 and p.spatial_crops == PROTOCOLS[views].spatial_crops  # overrides still apply
    assert p.train_passes == PROTOCOLS[views].train_passes and p.train_augment == "demo"
    assert choice.notes == ()  # same normalisation as the demo protocols


def test_contract_with_a_frame_rate_samples_the_demo_clips_at_that_rate():
    fps = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=4, fps=12.5, crop_size=32, canvas=40,
                        eval_views="demo")
    choice = protocol_for(fps)
    assert choice.protocol.fps == 12.5 and choice.protocol.num_frames == 4
    strided = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=4, stride=3, crop_size=32, canvas=40,
                            eval_views="demo")
    assert (protocol_for(strided).protocol.stride, protocol_for(strided).protocol.fps) == (3, None)


def test_seed_protocols_resample_like_the_seeds():
    """BraVe's SVM clip is every 2nd frame at 25 fps, FGKVMemPred's every 4th at 30 fps, GDT's 30 fps:
    the same seconds whatever the source frame rate."""
    from vidssl.eval.features import clip_plan
    from vidssl.data.sampling import VideoShape

    assert (PROTOCOLS["brave"].fps, PROTOCOLS["fgkvmem"].fps, PROTOCOLS["gdt"].fps) == (12.5, 7.5, 30.0)
    for source_fps in (25.0, 30.0):
        plan = clip_plan(PROTOCOLS["brave"], augmented=False)
        sel = plan.sample(VideoShape(int(20 * source_fps), source_fps))
        frames = sel.views["clip"].frame_indices[0]
        assert (frames[-1] - frames[0]) / source_fps == pytest.approx(31 * 2 / 25, abs=1 / source_fps)


def test_value_range_and_one_channel_are_folded_into_the_normalisation():
    c255 = InputContract(value_range=(0, 255), mean=(114.75,), std=(57.375,), eval_views="fgkvmem")
    mean, std = contract_normalisation(c255)
    assert mean == pytest.approx((0.45,) * 3) and std == pytest.approx((0.225,) * 3)
    signed = InputContract(value_range=(-1, 1), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert contract_normalisation(signed) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # 2·x01 - 1 = (x01 - 0.5)/0.5


def test_bad_contracts_are_user_errors():
    with pytest.raises(UserError, match="input contract is for 'audio' input"):
        protocol_for(encoder_with(InputContract(modality="audio", eval_views="fgkvmem")))
    with pytest.raises(UserError, match="names view protocol 'vivit', unknown to this vidssl"):
        protocol_for(encoder_with(InputContract(eval_views="vivit")))
    with pytest.raises(UserError, match="fixes the normalisation"):
        protocol_for(encoder_with(BRAVE), mean=(0.5,) * 3)
    with pytest.raises(UserError, match="takes 3 \\(RGB\\) channels"):
        protocol_for(encoder_with(InputContract(mean=(0.0, 0.0), std=(1.0, 1.0), eval_views="fgkvmem")))
    with pytest.raises(ConfigError, match="did you mean 'demo'"):
        protocol_for(encoder_with(BRAVE), "demoo")


def test_contract_without_eval_views_uses_the_default():
    choice = protocol_for(encoder_with(InputContract(mean=(0.5,) * 3, std=(0.5,) * 3)), default="gdt")
    assert choice.protocol.name == "gdt" and choice.views_from == "default"
    assert choice.protocol.mean == (0.5,) * 3 and choice.protocol.std == (0.5,) * 3


def test_bevt_ssv2_train_view_runs_randaugment_then_erasing_then_normalise():
    """The seed's order: crop, RandAugment(n=4, m=7) on the crop, Normalize, RandomErasing p 0.25. Here the
    erasing sits just before Normalize and fills mean + std·0, which Normalize maps to the seed's 0."""
    protocol = get_protocol("bevt_ssv2")
    steps = list(build_train_augment(protocol).transforms)
    assert [type(step) for step in steps] == [T.ToFloatClip, T.RandomResizedCrop, T.RandAugment, T.RandomErasing,
                                              T.Normalize]
    crop, randaugment, erasing, normalize = steps[1:]
    assert crop.size == (224, 224) and crop.scale == (0.08, 1.0)
    assert (randaugment.num_ops, randaugment.magnitude, randaugment.magnitude_max) == (4, 7.0, 30.0)
    assert randaugment.magnitude_std == 0 and randaugment.edge_crop and randaugment.ops == T.RANDAUGMENT_OPS
    assert randaugment.flip_p == 0.0  # SSv2 labels name directions; the seed's flip is in "bevt_ssv2_seed"
    assert erasing.p == 0.25 and erasing.mode == "const" and erasing.count == (1, 1)
    assert erasing.scale == (0.02, 1 / 3) and erasing.ratio == (0.3, 1 / 0.3)
    assert torch.equal(erasing.mean, normalize.mean) and torch.equal(erasing.std, normalize.std)
    torch.testing.assert_close(normalize.mean.flatten(), torch.tensor(protocol.mean))

    seed_view = list(build_train_augment(get_protocol("bevt_ssv2", train_augment="bevt_ssv2_seed")).transforms)
    assert [type(step) for step in seed_view] == [type(step) for step in steps] and seed_view[2].flip_p == 0.5

    small = ViewProtocol("t", 2, 1, (16, 20), 12, train_augment="bevt_ssv2", mean=protocol.mean, std=protocol.std)
    clips = torch.randint(0, 256, (3, 2, 16, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = build_train_augment(small)(clips, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 3, 2, 12, 12) and out.dtype == torch.float32
