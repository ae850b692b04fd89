"""BraVe: loss, heads, parameter groups, flow augmentation (pure pieces)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidssl.data.transforms import augment_flow
from vidssl.losses import brave_loss, regression_loss, safe_normalize
from vidssl.methods.brave import brave_param_groups, lars_adapted
from vidssl.optim import apply_grad_multipliers
from vidssl.models.heads import BraveHeads, ProjectAndPredict

# ---------------------------------------------------------------- loss


def test_regression_loss_known_values():
    # BraVe's own unit test: reg([1,2,3], [0,0,0]) == 0.5 (safe norm of a zero target)
    assert float(regression_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 3))) == pytest.approx(0.5)
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert float(regression_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(regression_loss(x, 5 * x)) == pytest.approx(0.0, abs=1e-7)  # scale invariant
    assert float(regression_loss(x, -x)) == pytest.approx(2.0)
    orth = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert float(regression_loss(x, orth)) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 16), st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_regression_loss_is_one_minus_cosine_and_scale_invariant(batch, dim, seed, scale):
    g = torch.Generator().manual_seed(seed)
    p, z = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    expected = (1 - torch.nn.functional.cosine_similarity(p, z, dim=-1)).mean()
    assert float(regression_loss(p, z)) == pytest.approx(float(expected), abs=1e-5)
    assert float(regression_loss(scale * p, z / scale)) == pytest.approx(float(expected), abs=1e-4)
    assert 0.0 <= float(regression_loss(p, z)) <= 2.0 + 1e-6


def test_regression_loss_stops_the_target_gradient_and_moves_prediction_towards_target():
    p = torch.tensor([[1.0, 0.2]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss = regression_loss(p, z)
    loss.backward()
    assert z.grad is None or not z.grad.any()
    with torch.no_grad():
        stepped = p - 0.1 * p.grad
    assert float(regression_loss(stepped, z)) < float(loss.detach())


def test_safe_normalize_has_finite_gradient_at_zero():
    x = torch.zeros(2, 4, requires_grad=True)
    out = safe_normalize(x)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and not out.any()
    y = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(safe_normalize(y), torch.tensor([[0.6, 0.8]]))


def test_regression_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        regression_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="B×D"):
        regression_loss(torch.zeros(3), torch.zeros(3))


def test_brave_loss_is_the_mean_of_both_directions_per_broad_view():
    g = torch.Generator().manual_seed(0)
    zn, hn, zb, hb, za, ha = (torch.randn(4, 8, generator=g) for _ in range(6))
    out = brave_loss((zn, hn), {"broad_video": (zb, hb)})
    expected = (regression_loss(hb, zn) + regression_loss(hn, zb)) / 2
    torch.testing.assert_close(out["loss"], expected)
    two = brave_loss((zn, hn), {"broad_video": (zb, hb), "broad_audio": (za, ha)})
    terms = [regression_loss(hb, zn), regression_loss(hn, zb), regression_loss(ha, zn), regression_loss(hn, za)]
    torch.testing.assert_close(two["loss"], torch.stack(terms).mean())
    assert set(two) == {"loss", "loss_broad_video_to_narrow", "loss_narrow_to_broad_video",
                        "loss_broad_audio_to_narrow", "loss_narrow_to_broad_audio"}
    identical = brave_loss((zn, zn), {"broad_video": (zn, zn)})
    assert float(identical["loss"]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least one broad view"):
        brave_loss((zn, hn), {})


def test_loss_at_initialisation_is_about_one():
    """BraVe's sanity check: with random backbones' features and fresh heads the loss is ≈ 1."""
    torch.manual_seed(0)
    heads = BraveHeads({"narrow": 64, "broad_audio": 64}, hidden_dim=256)
    f_n, f_b = torch.randn(32, 64), torch.randn(32, 64)
    loss = brave_loss(heads("narrow", f_n), {"broad_audio": heads("broad_audio", f_b)})["loss"]
    assert float(loss.detach()) == pytest.approx(1.0, abs=0.15)


# ---------------------------------------------------------------- heads


def test_head_shapes_and_layers():
    head = ProjectAndPredict(32, hidden_dim=64, out_dim=16)
    z, h = head(torch.randn(5, 32))
    assert z.shape == h.shape == (5, 16)
    layers = {n: type(m).__name__ for n, m in head.projector.named_children()}
    assert layers == {"hidden": "Linear", "hidden_norm": "BatchNorm1d", "out": "Linear", "out_norm": "BatchNorm1d"}
    assert {n: type(m).__name__ for n, m in head.predictor.named_children()} == {
        "hidden": "Linear", "hidden_norm": "BatchNorm1d", "out": "Linear"}
    # projector = Linear -> BN -> ReLU -> Linear -> BN, exactly
    x = torch.randn(5, 32)
    p = head.projector
    torch.testing.assert_close(p(x), p.out_norm(p.out(torch.relu(p.hidden_norm(p.hidden(x))))))
    bn = head.projector.hidden_norm
    assert bn.momentum == pytest.approx(0.1) and bn.eps == pytest.approx(1e-5)
    # haiku Linear init: truncated normal with std 1/sqrt(fan_in), zero bias
    w = head.projector.hidden.weight
    assert float(w.detach().abs().max()) <= 2 / math.sqrt(32) + 1e-6 and not head.projector.hidden.bias.any()


def test_shared_heads_use_one_set_of_weights():
    heads = BraveHeads({"narrow": 32, "broad_video_0": 32, "broad_audio": 32}, hidden_dim=64)
    assert sum(p.numel() for p in heads.parameters()) == sum(p.numel() for p in ProjectAndPredict(32, 64).parameters())
    heads.eval()
    x = torch.randn(3, 32)
    torch.testing.assert_close(heads("narrow", x)[0], heads("broad_audio", x)[0])


def test_shared_heads_with_two_widths_share_all_but_the_input_layer():
    heads = BraveHeads({"narrow": 64, "broad_audio": 32}, hidden_dim=48, out_dim=8)
    assert list(heads.input_layers) == ["64"]
    z64, h64 = heads("narrow", torch.randn(4, 64))
    z32, h32 = heads("broad_audio", torch.randn(4, 32))
    assert z64.shape == z32.shape == (4, 8)
    (z64.sum() + h64.sum()).backward()
    assert heads.input_layers["64"].weight.grad is not None
    assert heads.head.projector.hidden.weight.grad is None  # 32-wide input layer untouched
    assert heads.head.projector.out.weight.grad is not None  # shared rest


def test_per_view_heads_are_separate():
    heads = BraveHeads({"narrow": 16, "broad_audio": 16}, shared=False, hidden_dim=32)
    assert set(heads.heads) == {"narrow", "broad_audio"}


# ---------------------------------------------------------------- optimiser groups


def test_param_groups_predictor_lr_and_lars_mask():
    heads = BraveHeads({"narrow": 8}, hidden_dim=16, out_dim=4)
    named = list(heads.named_parameters())
    groups = {g["name"]: g for g in brave_param_groups(named)}
    assert set(groups) == {"main_lars", "main_plain", "predictor_lars", "predictor_plain"}
    # BraVe's ×10 is a gradient multiplier on the predictor (before decay and LARS), not an lr multiplier
    assert groups["predictor_lars"]["grad_mult"] == 10.0 and groups["main_lars"]["grad_mult"] == 1.0
    assert groups["predictor_lars"]["lr_mult"] == 1.0
    # intended: weights adapted and decayed, biases / BN not
    assert all(p.ndim == 2 for p in groups["main_lars"]["params"])
    assert all(p.ndim == 1 for p in groups["main_plain"]["params"])
    assert groups["main_plain"]["weight_decay_mult"] == 0.0 and groups["main_lars"]["lars"]
    # faithful (released) mask: inverted
    faithful = {g["name"]: g for g in brave_param_groups(named, faithful_lars_mask=True)}
    assert all(p.ndim == 1 for p in faithful["main_lars"]["params"])
    assert all(p.ndim == 2 for p in faithful["main_plain"]["params"])
    total = sum(p.numel() for p in heads.parameters())
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == total


def test_lars_mask_names():
    w, b = torch.zeros(3, 3), torch.zeros(3)
    assert lars_adapted("head.projector.hidden.weight", w) and not lars_adapted("head.projector.hidden.bias", b)
    assert not lars_adapted("x.weight", w, faithful_lars_mask=True)
    assert lars_adapted("bn.weight", b, faithful_lars_mask=True)


# ---------------------------------------------------------------- flow augmentation


def test_augment_flow_keeps_vectors_consistent():
    flow = torch.zeros(8, 2, 3, 16, 16)
    flow[:, 0] = 0.1  # uniform motion to the right
    g = torch.Generator().manual_seed(0)
    out = augment_flow(flow, 8, generator=g)
    assert out.shape == (8, 2, 3, 8, 8)
    dx = out[:, 0].mean(dim=(1, 2, 3))
    # each sample: uniform, sign tells whether it was flipped, magnitude grows with the zoom (≥ 8/16)
    assert torch.all(dx.abs() >= 0.05 - 1e-6) and torch.all(dx.abs() <= 1.0)
    assert (dx < 0).any() and (dx > 0).any()
    assert torch.allclose(out[:, 1], torch.zeros_like(out[:, 1]))
    with pytest.raises(ValueError, match="B×2×T×H×W"):
        augment_flow(torch.zeros(1, 3, 2, 8, 8), 4)


# ---------------------------------------------------------------- configuration, views, spectrogram

import numpy as np  # noqa: E402

from vidssl.config import from_dict  # noqa: E402
from vidssl.errors import ConfigError  # noqa: E402
from vidssl.data.sampling import VideoShape  # noqa: E402
from vidssl.methods.brave import BraveConfig, brave_plan  # noqa: E402


def _full_config(**overrides) -> BraveConfig:
    return from_dict(BraveConfig, overrides)


def test_views_narrow_starts_the_broad_view_and_lies_inside_it():
    m = _full_config(broad=["video", "audio"])
    plan = brave_plan(m)
    assert [(v.name, v.kind) for v in plan.views] == [("narrow", "video"), ("broad_video", "video"),
                                                      ("broad_audio", "audio")]
    for seed in range(20):
        sel = plan.sample(VideoShape(600, 25.0), np.random.default_rng(seed))  # a 24 s video at 25 fps
        narrow = sel.start_frame + sel.views["narrow"].frame_indices
        broad = sel.start_frame + sel.views["broad_video"].frame_indices
        np.testing.assert_array_equal(np.diff(narrow), 2)  # every 2nd frame at 25 fps
        assert len(narrow) == 16 and len(broad) == 64
        start = narrow[0]
        assert 0 <= start <= 600 - 31  # drawn so the narrow view fits, over the whole video
        np.testing.assert_array_equal(broad, (start + 4 * np.arange(64)) % 600)  # left-aligned, looped past the end
        assert sel.looped == (start + 253 >= 600)
        # the audio starts with the views and lasts 10.24 s at its own rate
        assert sel.views["broad_audio"].audio_starts == pytest.approx((start - sel.start_frame) / 25.0)
        assert plan.views[2].seconds == pytest.approx(10.24) and plan.views[2].sample_rate == 48000


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_clip_timing_is_in_seconds_at_25_fps_whatever_the_source_rate(fps):
    """BraVe resamples to 25 fps: narrow 1.28 s, broad 10.24 s at any source rate, and the narrow start
    is drawn over the whole video (a 10 s video: not confined to the first ~2 s as when the broad view
    had to fit)."""
    plan = brave_plan(_full_config(broad=["video"]))
    n = int(10 * fps)  # a 10 s video
    starts = []
    for seed in range(300):
        sel = plan.sample(VideoShape(n, fps), np.random.default_rng(seed))
        narrow = sel.start_frame + sel.views["narrow"].frame_indices
        broad = sel.start_frame + sel.views["broad_video"].frame_indices
        # time spans: first to last frame + one frame step, in seconds
        assert (narrow[-1] - narrow[0]) / fps == pytest.approx(15 * 2 / 25, abs=1 / fps)
        unwrapped = broad[0] + np.round(np.arange(64) * 4 * fps / 25).astype(int)
        np.testing.assert_array_equal(broad, unwrapped % n)
        assert (unwrapped[-1] - unwrapped[0]) / fps == pytest.approx(63 * 4 / 25, abs=1 / fps)
        starts.append(int(narrow[0]))
    last_start = n - (int(round(15 * 2 * fps / 25)) + 1)
    assert min(starts) <= 0.05 * n and max(starts) >= 0.9 * last_start  # the whole video, not frames 0–47
    assert max(starts) <= last_start


def test_views_loop_short_videos_like_extend_sequence():
    plan = brave_plan(_full_config(broad=["video"]))
    sel = plan.sample(VideoShape(250, 25.0), np.random.default_rng(0))  # a 10 s Kinetics clip
    assert sel.looped and (sel.start_frame, sel.end_frame) == (0, 250)
    narrow = sel.views["narrow"].frame_indices
    broad = sel.views["broad_video"].frame_indices
    start = narrow[0]
    assert 0 <= start <= 250 - 31
    np.testing.assert_array_equal(broad, (start + 4 * np.arange(64)) % 250)  # wraps around the clip
    np.testing.assert_array_equal(narrow, start + 2 * np.arange(16))  # the narrow view itself never wraps


def test_audio_only_and_flow_views():
    plan = brave_plan(_full_config(broad=["audio", "flow"]))
    assert [(v.name, v.kind) for v in plan.views] == [("narrow", "video"), ("broad_audio", "audio"),
                                                      ("broad_flow", "flow")]
    audio, flow = plan.views[1], plan.views[2]
    assert audio.seconds == pytest.approx(10.24) and audio.align_to == "narrow"
    assert (flow.num_frames, flow.fps, flow.canvas, flow.flow.method) == (64, 25 / 4, (128, 128), "dis")
    sel = plan.sample(VideoShape(1000, 25.0), np.random.default_rng(1))
    assert sel.views["broad_flow"].frame_indices[0] == sel.views["narrow"].frame_indices[0]


@pytest.mark.parametrize(
    "broad, message",
    [(["vidoe"], "unknown view 'vidoe' \\(did you mean 'video'\\?\\)"), ([], "at least one broad view"),
     (["audio", "audio"], "'audio' can appear once")],
)
def test_bad_broad_views_are_config_errors(broad, message):
    with pytest.raises(ConfigError, match=message):
        _full_config(broad=broad)


def test_presets_name_every_configuration():
    from vidssl.config import preset_names
    from vidssl.methods.train import load_pretrain_config

    expected = {"vv": ["video"], "va": ["audio"], "vf": ["flow"], "vaf": ["audio", "flow"],
                "vvvv": ["video", "video", "video"]}
    names = set(preset_names())
    for key, broad in expected.items():
        for name in (f"brave_{key}_tsm50_k600", f"brave_{key}_tiny"):
            assert name in names
            cfg = load_pretrain_config(name)
            assert cfg.method.broad == broad
        full = load_pretrain_config(f"brave_{key}_tsm50_k600")
        assert (full.data.batch_size, full.optim.lr, full.optim.weight_decay, full.trainer.max_steps) == (512, 1.0, 0.01, 300000)
        assert full.optim.warmup_steps == 5000 and full.optim.schedule == "cosine"
        assert full.method.predictor_grad_mult == 10.0 and full.method.predictor_lr_mult == 1.0
        assert full.method.target_fps == 25.0
    assert load_pretrain_config("brave_vaf_tsm50x2_k600").method.backbone == "tsm_resnet50_x2"


def test_spectrogram_shapes_at_48_and_16_khz():
    from vidssl.data.audio import LogMelSpectrogram

    at48 = LogMelSpectrogram(sample_rate=48000)
    spec = at48(torch.randn(1, int(10.24 * 48000)) * 0.1)
    assert spec.shape == (1, 1, 3072, 80)
    # faithful 48 kHz: 16 of the 80 mel bands have no FFT bin and are always 0
    assert int((at48.mel_matrix.sum(dim=0) == 0).sum()) == 16
    assert torch.all(spec[0, 0][:, at48.mel_matrix.sum(dim=0) == 0] == 0)
    at16 = LogMelSpectrogram(sample_rate=16000)
    assert at16(torch.randn(2, int(10.24 * 16000)) * 0.1).shape == (2, 1, 1024, 80)
    assert int((at16.mel_matrix.sum(dim=0) == 0).sum()) == 0


# ---------------------------------------------------------------- optimiser semantics


def _one_step(faithful: bool):
    from vidssl.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    head = BraveHeads({"narrow": 8}, hidden_dim=16, out_dim=4)
    named = list(head.named_parameters())
    cfg = OptimConfig(name="lars", lr=1.0, momentum=0.0, weight_decay=0.01, nesterov=False, trust_coefficient=1e-3,
                      lars_formula="update_norm")
    opt = build_optimizer(cfg, brave_param_groups(named, 10.0, faithful))  # the one LARS of vidssl.optim
    before = {n: p.detach().clone() for n, p in named}
    z, h = head("narrow", torch.randn(6, 8))
    (h.pow(2).sum() + z.sum()).backward()
    grads = {n: p.grad.detach().clone() for n, p in named}
    apply_grad_multipliers(opt)  # what the engine does before every step
    opt.step()
    return {n: before[n] - p.detach() for n, p in named}, grads, before


def test_intended_mask_adapts_weights_and_leaves_biases_plain():
    step, grads, before = _one_step(faithful=False)
    w, b = "head.projector.hidden.weight", "head.projector.hidden.bias"
    u = grads[w] + 0.01 * before[w]
    trust = 1e-3 * before[w].norm() / u.norm()
    torch.testing.assert_close(step[w], trust * u)
    torch.testing.assert_close(step[b], grads[b])  # plain SGD, no decay
    pw = "head.predictor.hidden.weight"
    up = 10.0 * grads[pw] + 0.01 * before[pw]  # the ×10 acts on the gradient, before decay and the trust ratio
    torch.testing.assert_close(step[pw], 1e-3 * before[pw].norm() / up.norm() * up)
    pb = "head.predictor.hidden.bias"
    torch.testing.assert_close(step[pb], 10.0 * grads[pb])  # plain SGD: ×10 gradient = ×10 step


def test_faithful_mask_is_the_released_inverted_one():
    step, grads, before = _one_step(faithful=True)
    w, bn = "head.projector.hidden.weight", "head.projector.hidden_norm.weight"
    torch.testing.assert_close(step[w], grads[w])  # weights: plain SGD at lr 1, no decay
    u = grads[bn] + 0.01 * before[bn]
    torch.testing.assert_close(step[bn], 1e-3 * before[bn].norm() / u.norm() * u)  # BN scale: LARS + decay
    # a predictor BN scale: LARS on (10·g + wd·w), not 10 × LARS(g + wd·w) (which moved ~10× too far)
    pbn = "head.predictor.hidden_norm.weight"
    up = 10.0 * grads[pbn] + 0.01 * before[pbn]
    torch.testing.assert_close(step[pbn], 1e-3 * before[pbn].norm() / up.norm() * up)
    old = 10.0 * 1e-3 * before[pbn].norm() / (grads[pbn] + 0.01 * before[pbn]).norm() * (grads[pbn] + 0.01 * before[pbn])
    assert float(old.norm()) > 5 * float(step[pbn].norm())


# ---------------------------------------------------------------- the method on the embedded dataset


def _method(preset: str, root, *overrides):
    from vidssl.methods.brave import Brave
    from vidssl.methods.train import load_pretrain_config

    cfg = load_pretrain_config(preset, [f"data.root={root}", *overrides])
    return Brave(cfg, num_classes=10)


def _dataset(method, root):
    """The training dataset of the method's primary stream, as the DataModule builds it."""
    from vidssl.data.module import StreamDataModule

    data = StreamDataModule(method.data_streams(), seed=0)
    data.setup("fit")
    return data.make_dataset("video")


def test_every_configuration_forward_and_backward_on_demo_batch(demo_root):
    from vidssl.data.datasets import collate

    for key, shapes in {
        "va": {"narrow": (2, 3, 8, 48, 48), "broad_audio": (2, 1, 256, 80)},
        "vaf": {"narrow": (2, 3, 8, 48, 48), "broad_audio": (2, 1, 256, 80), "broad_flow": (2, 2, 16, 32, 32)},
        "vvvv": {"narrow": (2, 3, 8, 48, 48), **{f"broad_video_{k}": (2, 3, 16, 32, 32) for k in (1, 2, 3)}},
    }.items():
        torch.manual_seed(0)
        method = _method(f"brave_{key}_tiny", demo_root)
        dataset = _dataset(method, demo_root)
        batch = {"video": collate([dataset[0], dataset[1]])}
        views = method.augment(batch)
        assert {name: tuple(v.shape) for name, v in views.items()} == shapes
        out = method.compute_loss(views, batch)
        assert out["embedding"].shape == (2, method.embed_dim)
        assert 0.5 < float(out["loss"].detach()) < 1.5  # ≈ 1 at initialisation
        out["loss"].backward()
        assert method.encoder.backbone.tsm_resnet_stem.weight.grad is not None  # residual-frame presets
        assert all(p.grad is not None for p in method.broad_backbones.parameters() if p.requires_grad)
    # V/VVV: the three broad video views are augmented independently
    assert not torch.equal(views["broad_video_1"], views["broad_video_2"])


def test_residual_frames_reach_the_video_encoders_but_never_flow(demo_root):
    from vidssl.models.backbones import ResidualFrames

    method = _method("brave_vvvv_tiny", demo_root, "method.backbone_kwargs={residual_frames: true}")
    assert isinstance(method.encoder, ResidualFrames)
    assert isinstance(method.broad_backbones["video"], ResidualFrames)
    method = _method("brave_vf_tiny", demo_root, "method.backbone_kwargs={residual_frames: true}")
    assert not isinstance(method.broad_backbones["flow"], ResidualFrames)


def test_flow_dataset_items_and_cache(demo_root):
    from vidssl.data.flow import CACHE_DIRNAME

    method = _method("brave_vf_tiny", demo_root)
    dataset = _dataset(method, demo_root)
    item = dataset[3]
    flow = item["clips"]["broad_flow"]
    assert flow.shape == (2, 16, 40, 40) and flow.dtype == torch.float32
    assert 0.0 < float(flow.abs().max()) <= 1.0  # real motion, scaled into [-1, 1]
    assert any((demo_root / CACHE_DIRNAME).glob("*.npz"))
    again = _dataset(method, demo_root)
    torch.testing.assert_close(again[3]["clips"]["broad_flow"], flow)
    options = method.make_plan().views[1].flow
    assert again.flow_cache(options).computed == 0  # read back from the cache


@pytest.mark.parametrize("key", ["va", *(pytest.param(k, marks=pytest.mark.slow) for k in ("vv", "vf", "vaf", "vvvv"))])
def test_smoke_pretrain_every_configuration(key, demo_root, tmp_path):
    """Lightning pretraining, 2 steps, then the exported encoder is the narrow TSM."""
    from vidssl.methods.train import load_pretrain_config, pretrain
    from vidssl.models import load_encoder

    cfg = load_pretrain_config(f"brave_{key}_tiny", [f"data.root={demo_root}", "trainer.max_steps=2",
                                                     "data.batch_size=4"])
    out = pretrain(cfg, tmp_path / key, log=lambda msg: None)
    encoder = load_encoder(out)
    # the tiny presets feed residual frames: the narrow TSM sits inside the ResidualFrames wrapper
    assert type(encoder.backbone).__name__ == "TSMResNet" and encoder.backbone.tsm_resnet_stem.in_channels == 3
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    torch.testing.assert_close(encoder.state_dict()["backbone.tsm_resnet_stem.weight"],
                               last["state_dict"]["encoder.backbone.tsm_resnet_stem.weight"])


def test_schedule_warms_up_in_steps_then_cosine(demo_root, monkeypatch):
    from vidssl.methods.brave import Brave

    method = _method("brave_va_tiny", demo_root, "optim.warmup_steps=10", "optim.name=lars", "optim.lr=1.0",
                     "optim.weight_decay=0.01")
    monkeypatch.setattr(Brave, "total_steps", property(lambda self: 110))
    factors = [method.lr_factor(s) for s in (0, 5, 10, 60, 110)]
    assert factors == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    optimizer = method.configure_optimizers()
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["predictor_lars"]["base_lr"] == pytest.approx(10.0 * by_name["main_lars"]["base_lr"])  # tiny: lr ×10
    assert by_name["predictor_lars"]["grad_mult"] == 1.0
    assert by_name["main_plain"]["weight_decay"] == 0.0 and by_name["main_lars"]["lars_weight_decay"] == 0.01
    assert not by_name["main_plain"]["lars"] and by_name["main_lars"]["lars"]
    assert not by_name["probe"].get("scheduled", True)


def test_missing_audio_is_left_out_of_the_audio_terms():
    """A clip marked audio-invalid contributes nothing to the audio terms (not regressed as silence)."""
    torch.manual_seed(0)
    narrow = (torch.randn(4, 8), torch.randn(4, 8))
    audio = (torch.randn(4, 8), torch.randn(4, 8))
    mask = torch.tensor([True, True, False, False])
    masked = brave_loss(narrow, {"broad_audio": audio}, {"broad_audio": mask})
    kept = brave_loss((narrow[0][:2], narrow[1][:2]), {"broad_audio": (audio[0][:2], audio[1][:2])})
    torch.testing.assert_close(masked["loss"], kept["loss"])
    none = brave_loss(narrow, {"broad_audio": audio}, {"broad_audio": torch.zeros(4, dtype=torch.bool)})
    assert float(none["loss"]) == 0.0
