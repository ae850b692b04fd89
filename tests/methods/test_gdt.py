"""GDT and STiCA as vidssl methods: views (time reversal and shift of frames and audio), audio masking,
every hypothesis trains, feature-crop geometry, transformer pooling, and every preset smoke-trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.data.sampling import VideoShape
from vidssl.data.synthetic import synthetic_batch
from vidssl.data.transforms import ToFloatClip
from vidssl.errors import ConfigError
from vidssl.methods import METHODS
from vidssl.methods.config import pretrain_config_from_dict
from vidssl.methods.gdt_nce import HYPOTHESES
from vidssl.methods.train import load_pretrain_config

SMALL_GDT = {"name": "gdt", "backbone": "r2plus1d18_tv_tiny", "backbone_kwargs": {"width": 4}, "num_frames": 4,
             "target_fps": None, "stride": 2, "canvas": 32, "crop_size": 24, "short_side": [24, 30],
             "audio_backbone": "audio_resnet9_tiny", "audio_backbone_kwargs": {"width": 4}, "audio_rate": 8000,
             "audio_seconds": 0.5, "proj_hidden_dim": 16, "proj_dim": 8}
SMALL_STICA = {"name": "stica", "backbone": "r2plus1d18_stica_tiny",
               "backbone_kwargs": {"width": 4, "pooling_layers": 1, "ffn_dim": 32}, "num_frames": 9, "target_fps": None,
               "stride": 1, "canvas": 40, "crop_size": 40, "audio_backbone": "audio_resnet9_tiny",
               "audio_backbone_kwargs": {"width": 4}, "audio_rate": 8000, "audio_seconds": 0.5, "audio_filters": 40,
               "proj_hidden_dim": 16, "proj_dim": 8, "spatial_crop_sizes": [2, 1], "temporal_crop_sizes": [1, 1]}

SMALL_TEXT = {**SMALL_GDT, "name": "gdt_text", "word_dim": 8, "text_dim": 16, "max_words": 6,
              "vocabulary": ["a", "red", "blue", "one", "two", "moves", "up"]}
for _key in ("audio_backbone", "audio_backbone_kwargs", "audio_rate", "audio_seconds"):
    SMALL_TEXT.pop(_key)


def gdt(**method):
    cfg = pretrain_config_from_dict({"method": {**SMALL_GDT, **method}})
    return METHODS[cfg.method.name](cfg, num_classes=3)


# ---------------------------------------------------------------- GDT views


def test_reversed_pairs_are_the_clip_backwards_with_the_same_spectrogram_flipped():
    torch.manual_seed(0)
    method = gdt(hypothesis="v_reversal_v_shift")
    batch = synthetic_batch(method.data_streams(), 3)
    views = method.make_views(batch)
    assert set(views) == {f"{m}_{t}" for m in ("video", "audio") for t in ("1", "1r", "2", "2r")}
    for p in ("1", "2"):
        # the audio augmentation (volume, SpecAugment) is shared between a pair and its reversal
        torch.testing.assert_close(views[f"audio_{p}r"], views[f"audio_{p}"].flip(2))
    method.video_augment = ToFloatClip()  # deterministic video views: the reversal is a flip in time
    views = method.make_views(batch)
    for p in ("1", "2"):
        torch.testing.assert_close(views[f"video_{p}r"], views[f"video_{p}"].flip(2))
        expected = batch["video"]["clips"][f"clip_{p}"].permute(0, 4, 1, 2, 3).float() / 255
        torch.testing.assert_close(views[f"video_{p}"], expected)


def test_the_plan_has_two_positions_each_with_its_synchronous_audio():
    method = gdt(hypothesis="i_shift")
    plan = method.make_plan()
    assert [v.name for v in plan.views] == ["clip_1", "audio_1", "clip_2", "audio_2"]
    assert gdt(hypothesis="v_reversal").make_plan().views[-1].name == "audio_1"  # one position, reversal on device
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(50):
        sel = plan.sample(VideoShape(num_frames=250, fps=25.0), rng)
        for p in ("1", "2"):
            clip, audio = sel.views[f"clip_{p}"], sel.views[f"audio_{p}"]
            assert float(audio.audio_starts) == pytest.approx(clip.frame_indices[0] / 25.0)  # audio starts with its clip
        starts.append((int(sel.views["clip_1"].frame_indices[0]), int(sel.views["clip_2"].frame_indices[0])))
    first, second = zip(*starts)
    assert len(set(first)) > 10 and len(set(second)) > 10 and np.mean(np.array(first) != np.array(second)) > 0.9


def test_missing_audio_is_masked_not_fed_as_silence():
    """With sample 1's audio invalid, its waveform has no effect on the loss (eval mode: no batch statistics)."""
    torch.manual_seed(0)
    method = gdt(hypothesis="v_reversal").eval()
    batch = synthetic_batch(method.data_streams(), 4)
    batch["video"]["valid"]["audio_1"][1] = False
    with torch.no_grad():
        torch.manual_seed(1)
        out = method.compute_loss(method.make_views(batch), batch)
        batch["video"]["clips"]["audio_1"][1] = torch.randn_like(batch["video"]["clips"]["audio_1"][1])
        torch.manual_seed(1)
        changed = method.compute_loss(method.make_views(batch), batch)
    assert torch.isfinite(out["loss"]) and float(out["audio_valid"]) == 0.75
    assert float(changed["loss"]) == pytest.approx(float(out["loss"]), rel=1e-6)


@pytest.mark.parametrize("number", list(HYPOTHESES))
def test_every_hypothesis_trains(number):
    torch.manual_seed(0)
    method = gdt(hypothesis=number)
    batch = synthetic_batch(method.data_streams(), 4)
    opt = torch.optim.SGD([p for n, p in method.named_parameters() if not n.startswith("probe")], lr=0.1)
    before = method.encoder.stem[0].weight.detach().clone()
    for _ in range(2):
        out = method.compute_loss(method.make_views(batch), batch)
        assert torch.isfinite(out["loss"]) and out["embedding"].shape == (4, method.embed_dim)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert not torch.equal(before, method.encoder.stem[0].weight)
    assert method.cfg.method.hypothesis == HYPOTHESES[number][0]


def test_gdt_config_errors_and_contract():
    with pytest.raises(ConfigError, match="unknown GDT hypothesis"):
        gdt(hypothesis="variant")
    with pytest.raises(ConfigError, match="short_side"):
        gdt(short_side=[20, 30])
    contract = gdt(target_fps=30.0, stride=1).input_contract()
    assert (contract.fps, contract.stride, contract.eval_views) == (30.0, None, "gdt")
    assert [g["name"] for g in gdt().param_groups()] == ["gdt"]  # one group: every parameter decayed


# ---------------------------------------------------------------- STiCA


def stica(**method):
    cfg = pretrain_config_from_dict({"method": {**SMALL_STICA, **method}})
    return METHODS["stica"](cfg, num_classes=3)


@pytest.mark.parametrize("crop, length, window", [("spatial", 7, 6), ("spatial", 7, 4), ("temporal", 4, 3),
                                                   ("temporal", 8, 6)])
def test_every_feature_crop_position_is_reachable(crop, length, window):
    """The original's ``randint(0, L - w)`` pins large crops to the corner; here every fitting position is drawn."""
    from vidssl.methods.stica import spatial_crop, temporal_crop

    torch.manual_seed(0)
    if crop == "spatial":
        grid = torch.arange(length * length, dtype=torch.float32).view(1, 1, 1, length, length).expand(2, 3, 2, -1, -1)
        seen = set()
        for _ in range(300):
            out = spatial_crop(grid, window)
            y, x = divmod(int(out[0, 0, 0, 0, 0]), length)
            torch.testing.assert_close(out, grid[..., y : y + window, x : x + window])
            seen.add((y, x))
        assert seen == {(y, x) for y in range(length - window + 1) for x in range(length - window + 1)}
    else:
        grid = torch.arange(length, dtype=torch.float32).view(1, 1, length, 1, 1).expand(2, 3, -1, 7, 7)
        seen = {int(temporal_crop(grid, window)[0, 0, 0, 0, 0]) for _ in range(200)}
        assert seen == set(range(length - window + 1))
    with pytest.raises(ConfigError, match="does not fit"):
        spatial_crop(torch.zeros(1, 1, 1, 3, 3), 4)


def test_transformer_pooling_one_token_per_step_no_batch_mixing():
    from vidssl.models.backbones import build_backbone

    torch.manual_seed(0)
    encoder = build_backbone("r2plus1d18_stica_tiny").eval()
    names = {n for n, _ in encoder.pooling.named_parameters()}
    assert not any("v_lin" in n or "out_lin" in n for n in names) and any("q_lin" in n for n in names)
    for steps in (1, 2, 4, 8):
        fmap = torch.randn(3, encoder.embed_dim, steps, 2, 2)
        pooled = encoder.pool(fmap)
        assert pooled.shape == (3, encoder.embed_dim)
        torch.testing.assert_close(encoder.pool(fmap[[2, 0, 1]]), pooled[[2, 0, 1]])  # no view across the batch
        # post-LN: the first token comes out of a LayerNorm (zero mean, unit variance over features)
        assert float(pooled.mean(dim=1).abs().max()) < 1e-4
        assert float((pooled.var(dim=1, unbiased=False) - 1).abs().max()) < 1e-2
    fmap = torch.randn(2, encoder.embed_dim, 4, 2, 2)
    later = fmap.clone()
    later[:, :, 1:] += 1.0  # other tokens still matter (attention) ...
    assert not torch.allclose(encoder.pool(fmap), encoder.pool(later))


def test_stica_crop_counts_and_no_wasted_passes():
    with pytest.raises(ConfigError, match="no feature-crop term"):
        stica(spatial_large_crops=1, spatial_small_crops=0, temporal_large_crops=0, temporal_small_crops=0)
    stica(spatial_large_crops=1, spatial_small_crops=0, temporal_large_crops=0, temporal_small_crops=0,
          cross_modal_alpha=1.0)  # the cross-modal loss alone is fine
    torch.manual_seed(0)
    method = stica(spatial_large_crops=2, spatial_small_crops=4, temporal_large_crops=2, temporal_small_crops=1)
    assert method.cfg.method.crop_terms == (1 + 8) + (1 + 2)
    encoder = method.pooled_encoder
    calls = []
    original = encoder.pool
    encoder.pool = lambda fmap: calls.append(tuple(fmap.shape[2:])) or original(fmap)
    batch = synthetic_batch(method.data_streams(), 4)
    out = method.compute_loss(method.make_views(batch), batch)
    assert torch.isfinite(out["loss"]) and {"loss_crops", "loss_cross_modal"} <= set(out)
    # 2 full maps + spatial (2 large of view 1, large 1 of view 2, 4 small) + temporal (2 + 1 + 1)
    assert len(calls) == 2 + 7 + 4
    assert calls[:2] == [(2, 3, 3)] * 2 and calls.count((2, 2, 2)) == 3 and calls.count((2, 1, 1)) == 4


# ---------------------------------------------------------------- presets

TINY_PRESETS = ["gdt_basecase_tiny", "gdt_v_reversal_i_shift_tiny", "stica_tiny", "gdt_text_tiny"]
FULL_PRESETS = ["gdt_basecase_r2plus1d18_k400", "gdt_v_reversal_i_shift_r2plus1d18_k400", "stica_r2plus1d18_k400"]


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_tiny_presets_pretrain_on_the_embedded_dataset(preset, demo_root, tmp_path):
    from vidssl.methods.train import pretrain
    from vidssl.models import load_encoder

    cfg = load_pretrain_config(preset, [f"data.root={demo_root}", "data.batch_size=4", "data.num_workers=0",
                                        "trainer.max_steps=2", "trainer.log_every=1"])
    run = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    encoder = load_encoder(run)
    assert encoder.input_contract.eval_views == "demo" and encoder.backbone_kwargs["residual_frames"] is True


@pytest.mark.parametrize("preset", FULL_PRESETS)
def test_seed_presets_build_and_step(preset):
    """The K400 presets as they are, with the networks shrunk to width 4 (a full R(2+1)D-18 step is
    minutes on a CPU): views of the preset's geometry, one optimiser step, the seed's optimiser."""
    kwargs = "{width: 4, pooling_layers: 1}" if preset.startswith("stica") else "{width: 4}"
    cfg = load_pretrain_config(preset, [f"method.backbone_kwargs={kwargs}", "method.audio_backbone_kwargs={width: 4}",
                                        "method.proj_hidden_dim=16", "method.proj_dim=8"])
    assert (cfg.optim.name, cfg.optim.schedule, cfg.data.batch_size) == ("sgd", "constant", 512)
    torch.manual_seed(0)
    method = METHODS[cfg.method.name](cfg, num_classes=3)
    batch = synthetic_batch(method.data_streams(), 2)
    frames = batch["video"]["clips"]["clip_1" if preset.startswith("gdt") else "clip"].shape[1]
    assert frames == cfg.method.num_frames
    out = method.compute_loss(method.make_views(batch), batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


# ---------------------------------------------------------------- video-text GDT


def test_video_text_gdt_views_and_masking():
    torch.manual_seed(0)
    cfg = pretrain_config_from_dict({"method": {**SMALL_TEXT, "hypothesis": "v_reversal"}})
    method = METHODS["gdt_text"](cfg, num_classes=3)
    batch = synthetic_batch(method.data_streams(), 4)
    batch["video"]["tokens_1"][0] = torch.tensor([1, 2, 4, 0, 0, 0])
    batch["video"]["text_valid_1"][3] = False
    views = method.make_views(batch)
    assert views["text_1r"][0].tolist() == [4, 2, 1, 0, 0, 0]  # reversed word order
    out = method.compute_loss(views, batch)
    assert torch.isfinite(out["loss"]) and float(out["text_valid"]) == 0.75
    assert method.input_contract().mean == (0.0,) * 3  # B8: pixels in [0, 1]


def test_video_text_seed_preset_with_official_word_vector_files(tmp_path):
    np.save(tmp_path / "dict.npy", np.array(["a", "dog", "runs"]))
    torch.save(torch.randn(4, 300), tmp_path / "word2vec.pth")
    cfg = load_pretrain_config("gdt_text_r2plus1d18_ht100m", [
        f"method.word2vec_path={tmp_path / 'word2vec.pth'}", f"method.dict_path={tmp_path / 'dict.npy'}",
        "method.backbone_kwargs={width: 4}", "method.proj_hidden_dim=16", "method.proj_dim=8"])
    assert (cfg.method.num_frames, cfg.method.target_fps, cfg.data.batch_size) == (30, 16.0, 768)
    torch.manual_seed(0)
    method = METHODS["gdt_text"](cfg, num_classes=3)
    assert not method.text_encoder.word_embd.weight.requires_grad
    batch = synthetic_batch(method.data_streams(), 2)
    out = method.compute_loss(method.make_views(batch), batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and method.text_encoder.fc1.weight.grad is not None


def test_stica_encoder_fine_tunes_with_its_transformer_pooling(tmp_path):
    """GDT/STiCA fine-tuning (Part D, `vidssl eval finetune --preset gdt`): the exported STiCA encoder is
    backbone + transformer pooling, and both are trained (STiCA's ``Finetune_Model_Agg``)."""
    import dataclasses

    from vidssl.eval.finetune import FINETUNE_PRESETS, finetune
    from vidssl.models.backbones import build_backbone

    class Colours(torch.utils.data.Dataset):
        def __init__(self, protocol, augmented):
            self.protocol, self.augmented = protocol, augmented

        def __len__(self):
            return 6

        def __getitem__(self, index):
            p = self.protocol
            shape = (p.num_frames, *p.canvas, 3) if self.augmented else (p.temporal_clips, p.num_frames, *p.canvas, 3)
            clip = torch.full(shape, 30, dtype=torch.uint8)
            clip[..., index % 2] = 220
            return {"video": {"clip": clip}, "label": torch.tensor(index % 2), "index": torch.tensor(index)}

    class Manifest:
        class_names = ["r", "g"]

    torch.manual_seed(0)
    encoder = build_backbone("r2plus1d18_stica_tiny", width=4, pooling_layers=1, ffn_dim=16)
    before = {n: p.detach().clone() for n, p in encoder.pooling.named_parameters()}
    cfg = dataclasses.replace(FINETUNE_PRESETS["gdt"], protocol="demo_quick", epochs=1, batch_size=3, clips_per_video=1,
                              warmup_epochs=1, eval_every_epoch_from=-1)
    result = finetune(encoder, Manifest(), 1, cfg, out_dir=tmp_path, device="cpu", progress=False,
                      dataset_factory=lambda manifest, protocol, split, fold, augmented, seed: Colours(protocol, augmented))
    assert 0.0 <= result.top1 <= 1.0
    assert any(not torch.equal(before[n], p) for n, p in encoder.pooling.named_parameters())
