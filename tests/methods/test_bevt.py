"""BEVT (reference §3): the shared 2-D/3-D Swin, its decoders against numbers of the official code, the
loss on masked cells only, the optimiser groups, the presets, and training on the embedded dataset."""

from __future__ import annotations

import pytest
import torch

from vidssl.data.synthetic import synthetic_batch
from vidssl.errors import ConfigError
from vidssl.methods import METHODS
from vidssl.methods.bevt import BEVTDecoders, masked_loss
from vidssl.methods.config import pretrain_config_from_dict
from vidssl.methods.train import load_pretrain_config
from vidssl.models.backbones import build_backbone
from vidssl.models.backbones.swin import SwinBEVT


def tiny_bevt(target: str = "pixels", **method):
    overrides = [f"method.target={target}"] + [f"method.{k}={v}" for k, v in method.items()]
    cfg = load_pretrain_config("bevt_tiny", overrides)
    return METHODS["bevt"](cfg)


# ------------------------------------------------------------------------------------------ the backbone


def test_image_path_has_no_parameters_of_its_own_except_patch_embedding_and_decoder():
    torch.manual_seed(0)
    method = tiny_bevt()
    image = torch.randn(2, 3, 64, 64)
    clip = torch.randn(2, 3, 8, 64, 64)
    mask2, mask3 = torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    mask2[:, :2], mask3[:, :, :2] = True, True

    def used_by(loss_fn):
        method.zero_grad(set_to_none=True)
        loss_fn().backward()
        return {n for n, p in method.named_parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0}

    image_params = used_by(lambda: method.predict_image(image, mask2)[0].square().mean())
    video_params = used_by(lambda: method.predict_video(clip, mask3)[0].square().mean())
    image_only = image_params - video_params
    assert image_only == {"encoder.patch_embed_2d.proj.weight", "encoder.patch_embed_2d.proj.bias",
                          "encoder.patch_embed_2d.norm.weight", "encoder.patch_embed_2d.norm.bias",
                          "decoders.fpn.0.weight", "decoders.fpn.0.bias", "decoders.lm_down.weight", "decoders.lm_down.bias"}
    shared = image_params & video_params
    assert {"encoder.mask_token", "encoder.norm.weight", "lm_head.weight",
            "encoder.layers.0.blocks.0.attn.relative_position_bias_table"} <= shared
    assert all(n in shared for n in image_params if n.startswith("encoder.layers."))


def test_image_attention_reads_the_temporal_offset_0_slice_of_the_3d_table():
    attn = build_backbone("swin_bevt_b", drop_path_rate=0.0).layers[0].blocks[0].attn
    table = attn.relative_position_bias_table.detach().view(15, 13, 13, 4)  # (2·8-1)(2·7-1)(2·7-1) × heads
    bias = attn.relative_position_bias((1, 7, 7)).detach()  # heads × 49 × 49
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    expected = table[7, ys[:, None] - ys[None, :] + 6, xs[:, None] - xs[None, :] + 6].permute(2, 0, 1)
    torch.testing.assert_close(bias, expected)
    # BEVT: relative_position_index[:49, :49] of the full 8×7×7 window is that slice
    full = attn.relative_position_index
    torch.testing.assert_close(attn.relative_position_bias_table.detach()[full[:49, :49].reshape(-1)].view(49, 49, 4).permute(2, 0, 1), bias)


def test_fused_and_explicit_attention_give_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = SwinBEVT(embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=(2, 4, 4), drop_path_rate=0.0)
    clip, image = torch.randn(2, 3, 8, 64, 64), torch.randn(2, 3, 64, 64)  # 4×16×16 tokens: shifted windows
    mask = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3] = True

    def run(fused: bool):
        model.set_fused_attention(fused)
        model.zero_grad(set_to_none=True)
        outs = [model.forward_stages(clip, mask)[-1], model.forward_stages(image)[-1]]
        sum(o.square().mean() for o in outs).backward()
        table = model.layers[1].blocks[1].attn.relative_position_bias_table.grad.clone()
        return [o.detach() for o in outs], table

    (clip_f, image_f), grad_f = run(True)
    (clip_e, image_e), grad_e = run(False)
    torch.testing.assert_close(clip_e, clip_f, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(image_e, image_f, atol=1e-5, rtol=1e-4)
    assert grad_f.abs().sum() > 0
    torch.testing.assert_close(grad_e, grad_f, atol=1e-6, rtol=1e-4)


OFFICIAL_CFG = dict(patch_size=(2, 4, 4), embed_dim=16, depths=(1, 1, 2, 2), num_heads=(1, 2, 2, 4), window_size=(4, 7, 7))


def _official_like_weights(model: SwinBEVT, decoders: BEVTDecoders, generator: torch.Generator):
    """Every parameter (official names) drawn in sorted-name order: N(0, 0.1), +1 for LayerNorm weights."""
    names = {**model.state_dict(), **decoders.state_dict()}
    weights = {}
    for key in sorted(names):
        is_ln = key.endswith("norm.weight") or "norm1.weight" in key or "norm2.weight" in key
        weights[key] = torch.randn(names[key].shape, generator=generator) * 0.1 + (1.0 if is_ln else 0.0)
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()})
    decoders.load_state_dict({k: v for k, v in weights.items() if k in decoders.state_dict()})


def test_stages_and_decoders_match_the_official_swin_transformer_bevt():
    """Numbers from xyzforever/BEVT ``SwinTransformerBEVT`` (8881b21) run once in a scratch folder on these
    weights and inputs (the official image path needs ``image_quirks=True``, see SwinBEVT)."""
    model = SwinBEVT(drop_path_rate=0.0, image_quirks=True, **OFFICIAL_CFG).eval()
    decoders = BEVTDecoders(128, 2).eval()
    g = torch.Generator().manual_seed(0)
    _official_like_weights(model, decoders, g)
    image, clip = torch.randn(1, 3, 224, 224, generator=g), torch.randn(1, 3, 8, 224, 224, generator=g)
    mask2, mask3 = torch.rand(1, 14, 14, generator=g) > 0.5, torch.rand(1, 4, 14, 14, generator=g) > 0.5
    with torch.no_grad():
        img_stages, vid_stages = model.forward_stages(image, mask2), model.forward_stages(clip, mask3)
        dec_img = model.norm(decoders.image(img_stages[2], img_stages[3])).flatten(1, 2)
        dec_vid = model.norm(decoders.video(vid_stages[2], vid_stages[3])).flatten(1, 3)
    x4i, x4v = img_stages[3][:, 0], vid_stages[3]
    assert x4i.shape == (1, 7, 7, 128) and x4v.shape == (1, 4, 7, 7, 128)
    assert float(x4i.sum()) == pytest.approx(316.7994079589844, rel=1e-4)
    torch.testing.assert_close(x4i[0, 0, 0, :4], torch.tensor([2.4697861671447754, -4.648157119750977, 2.3698740005493164, -1.353644847869873]), atol=1e-4, rtol=1e-4)
    assert float(x4v.sum()) == pytest.approx(2369.90185546875, rel=1e-4)
    torch.testing.assert_close(x4v[0, 0, 0, 0, :4], torch.tensor([-2.726658821105957, -4.455318450927734, 0.018456876277923584, -1.6412334442138672]), atol=1e-4, rtol=1e-4)
    assert dec_img.shape == (1, 196, 128) and dec_vid.shape == (1, 1568, 128)  # 8 frames → 8×14×14 outputs
    assert float(dec_img.sum()) == pytest.approx(426.4004211425781, rel=1e-4)
    torch.testing.assert_close(dec_img[0, 0, :4], torch.tensor([-0.9483169317245483, -0.2391832321882248, -0.3100971281528473, -0.17350706458091736]), atol=1e-4, rtol=1e-4)
    assert float(dec_vid.sum()) == pytest.approx(940.4114990234375, rel=1e-4)
    torch.testing.assert_close(dec_vid[0, 0, :4], torch.tensor([1.8467893600463867, 0.40675342082977295, -0.11724229156970978, 0.7931796908378601]), atol=1e-4, rtol=1e-4)


def test_a_16_frame_224_clip_gives_a_16x14x14_output_grid():
    model = SwinBEVT(drop_path_rate=0.0, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)).eval()
    decoders = BEVTDecoders(64, 2)
    with torch.no_grad():
        stages = model.forward_stages(torch.randn(1, 3, 16, 224, 224))
        assert decoders.video(stages[2], stages[3]).shape == (1, 16, 14, 14, 64)


def test_swin_b_bevt_sizes():
    with torch.device("meta"):
        model = build_backbone("swin_bevt_b")
    assert model.embed_dim == 1024 and model.patch_embed.proj.kernel_size == (2, 4, 4)
    assert model.patch_embed_2d.proj.kernel_size == (4, 4)
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.shape == (15 * 13 * 13, 4)
    assert model.layers[3].blocks[1].drop_path.p == pytest.approx(0.3)  # linear over the 24 blocks
    video_params = sum(p.numel() for n, p in model.named_parameters() if "patch_embed_2d" not in n)
    assert video_params == 87_638_984 + 128  # torchvision's swin3d_b (minus head) + the mask token


def test_backbone_input_errors_say_what_is_wrong():
    model = build_backbone("swin_bevt_tiny")
    with pytest.raises(ValueError, match="must divide the patch-token grid"):
        model(torch.randn(1, 3, 4, 64, 64), mask=torch.zeros(1, 2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="B×C×T×H×W or an image"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="image_path=False"):
        build_backbone("swin_bevt_tiny", image_path=False)(torch.randn(1, 3, 64, 64))


# ------------------------------------------------------------------------------------------ the loss


def test_the_loss_only_sees_masked_cells():
    torch.manual_seed(0)
    pred = torch.randn(2, 4, 3, 3, 5, requires_grad=True)
    target = torch.randn(2, 4, 3, 3, 5)
    mask = torch.rand(2, 4, 3, 3) > 0.5
    loss, _ = masked_loss(pred, target, mask, "regression")
    changed = target.clone()
    changed[~mask] = 100.0
    assert float(masked_loss(pred, changed, mask, "regression")[0].detach()) == pytest.approx(float(loss.detach()))
    loss.backward()
    assert float(pred.grad[~mask].abs().sum()) == 0 and float(pred.grad[mask].abs().sum()) > 0
    ids = torch.randint(0, 5, (2, 4, 3, 3))
    ce, acc = masked_loss(pred.detach(), ids, mask, "tokens")
    torch.testing.assert_close(ce, torch.nn.functional.cross_entropy(pred.detach()[mask], ids[mask]))
    with pytest.raises(ValueError, match="no masked cell"):
        masked_loss(pred, target, torch.zeros_like(mask), "regression")


def test_video_loss_mask_is_the_input_mask_doubled_in_time():
    method = tiny_bevt()
    batch = synthetic_batch(method.data_streams(), batch_size=2)
    views = method.make_views(batch)
    assert views["clip_mask"].shape == (2, 4, 4, 4) and views["image_mask"].shape == (2, 4, 4)
    assert views["clip_target"].shape == (2, 8, 4, 4, 768) and views["image_target"].shape == (2, 4, 4, 768)
    # predictions at unmasked cells do not reach the loss
    out = method.compute_loss(views, batch)
    pred, _ = method.predict_video(views["clip"], views["clip_mask"])
    assert pred.shape == (2, 8, 4, 4, 768)
    assert torch.isfinite(out["loss"]) and set(out) >= {"loss", "loss_video", "loss_image", "embedding"}


# ------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("target", ["pixels", "hog", "vq", "dalle"])
def test_loss_falls_on_a_fixed_batch(target, tmp_path):
    from vidssl.models.tokenizers import DalleEncoder, VQTokenizer, save_dalle_encoder, save_vq_tokenizer

    torch.manual_seed(0)
    extra = {}
    if target == "vq":
        extra["tokenizer_path"] = str(save_vq_tokenizer(VQTokenizer(vocab_size=32, hidden=8, code_dim=4), tmp_path / "vq.safetensors"))
    if target == "dalle":  # a small dVAE encoder of the official architecture, random weights
        extra["tokenizer_path"] = str(save_dalle_encoder(DalleEncoder(n_hid=8, vocab_size=32), tmp_path / "dalle.safetensors"))
    method = tiny_bevt(target, **extra)
    batch = synthetic_batch(method.data_streams(), batch_size=4)
    optimiser = torch.optim.AdamW([p for g in method.param_groups() for p in g["params"]], lr=2e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(12):
        torch.manual_seed(1)  # the same crops and masks every step
        out = method.compute_loss(method.make_views(batch), batch)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.9 * losses[0], losses


def test_tokenizer_is_frozen_and_out_of_the_optimiser(tmp_path):
    from vidssl.models.tokenizers import DalleEncoder, save_dalle_encoder

    path = save_dalle_encoder(DalleEncoder(n_hid=8, vocab_size=32), tmp_path / "dalle.safetensors")
    method = tiny_bevt("dalle", tokenizer_path=str(path))
    method.train()
    assert not method.tokenizer.training and not any(p.requires_grad for p in method.tokenizer.parameters())
    optimised = {id(p) for g in method.param_groups() for p in g["params"]}
    assert not optimised & {id(p) for p in method.tokenizer.parameters()}
    assert method.lm_head.out_features == 32


def test_image_only_pretraining_uses_one_image_stream():
    cfg = load_pretrain_config("bevt_image_tiny")
    method = METHODS["bevt"](cfg)
    assert list(method.data_streams()) == ["image"]
    assert not hasattr(method.decoders, "fpn_s")
    batch = synthetic_batch(method.data_streams(), batch_size=2)
    out = method.compute_loss(method.make_views(batch), batch)
    assert "loss_video" not in out and torch.isfinite(out["loss"])


def test_pretrain_two_streams_on_the_embedded_dataset(demo_root, tmp_path):
    """One video batch + one image batch (frames of the same videos) per step, through Lightning."""
    from vidssl.methods.train import pretrain
    from vidssl.models import load_encoder

    cfg = load_pretrain_config("bevt_tiny", [
        f"data.root={demo_root}", f"streams.image.root={demo_root}", "data.batch_size=4", "streams.image.batch_size=6",
        "data.num_workers=0", "streams.image.num_workers=0", "max_steps=3", "log_every=1", "checkpoint_every=3",
        "method.target=hog"])
    run = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    metrics = (run / "metrics.csv").read_text()
    assert "train/loss_video" in metrics and "train/loss_image" in metrics
    encoder = load_encoder(run)
    assert encoder.input_contract.mean == (0.485, 0.456, 0.406)
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 8, 64, 64)).shape == (1, 256)


def test_two_stream_batch_reads_images_from_an_image_folder_and_clips_from_videos(demo_root, image_root):
    """The image stream from an ImageNet-style folder (format images), the video stream from the embedded
    videos: one combined batch as the DataModule delivers it, then BEVT's views and loss."""
    from vidssl.data.module import StreamDataModule

    cfg = load_pretrain_config("bevt_tiny", [
        f"data.root={demo_root}", f"streams.image.root={image_root}", "streams.image.format=images",
        "data.batch_size=2", "streams.image.batch_size=3", "data.num_workers=0", "streams.image.num_workers=0"])
    method = METHODS["bevt"](cfg)
    data = StreamDataModule(method.data_streams(), seed=0, log=lambda _: None)
    data.setup()
    assert data.manifests["image"].stills and not data.manifests["video"].stills
    batch = {name: next(iter(data.loader(name))) for name in data.streams}
    images, clips = batch["image"]["clips"]["image"], batch["video"]["clips"]["clip"]
    assert images.shape == (3, 64, 64, 3) and images.dtype == torch.uint8
    assert clips.shape == (2, 8, 64, 64, 3) and clips.dtype == torch.uint8
    # the images are the folder's (flat colours whose red channel says the class), with their labels
    torch.testing.assert_close(images[:, 32, 32, 0].float(), 60.0 * (batch["image"]["label"].float() + 1), atol=3.0, rtol=0.0)
    views = method.make_views(batch)
    assert views["image"].shape == (3, 3, 64, 64) and views["clip"].shape == (2, 3, 8, 64, 64)
    out = method.compute_loss(views, batch)
    assert torch.isfinite(out["loss"]) and torch.isfinite(out["loss_image"]) and torch.isfinite(out["loss_video"])


def test_pretrain_with_the_image_stream_from_an_image_folder(demo_root, image_root, tmp_path):
    from vidssl.data.index import load_manifest
    from vidssl.methods.train import pretrain

    cfg = load_pretrain_config("bevt_tiny", [
        f"data.root={demo_root}", f"streams.image.root={image_root}", "data.batch_size=2", "streams.image.batch_size=4",
        "data.num_workers=0", "streams.image.num_workers=0", "max_steps=3", "log_every=1", "checkpoint_every=3"])
    run = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    metrics = (run / "metrics.csv").read_text()
    assert "train/loss_video" in metrics and "train/loss_image" in metrics
    assert (run / "encoder.safetensors").is_file()
    assert load_manifest(image_root).stills  # format auto detected the folder as images (manifest saved in it)


def test_image_only_pretrain_on_an_image_folder(image_root, tmp_path):
    from vidssl.methods.train import pretrain

    cfg = load_pretrain_config("bevt_image_tiny", [f"data.root={image_root}", "data.format=images", "data.batch_size=4",
                                                   "data.num_workers=0", "max_steps=2", "log_every=1", "checkpoint_every=2"])
    run = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    assert "train/loss_image" in (run / "metrics.csv").read_text()


def test_an_image_folder_cannot_feed_the_video_stream(image_root, tmp_path):
    from vidssl.errors import DataError
    from vidssl.methods.train import pretrain

    cfg = load_pretrain_config("bevt_tiny", [f"data.root={image_root}", f"streams.image.root={image_root}",
                                             "data.num_workers=0", "streams.image.num_workers=0", "max_steps=1"])
    with pytest.raises(DataError, match=r"holds still images \(format=images\), but view\(s\) clip \(video\) need videos"):
        pretrain(cfg, tmp_path / "run", log=lambda _: None)


# ------------------------------------------------------------------------------------------ config


def test_no_decay_follows_the_seeds_names():
    method = tiny_bevt()
    groups = {g["name"]: g for g in method.param_groups()}
    names = {id(p): n for n, p in method.named_parameters()}
    no_decay = {names[id(p)] for p in groups["bevt_no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["bevt"]["params"]}
    assert all("norm" in n or "relative_position_bias_table" in n for n in no_decay)
    assert "encoder.layers.0.blocks.0.norm1.weight" in no_decay and "encoder.patch_embed.norm.bias" in no_decay
    assert {"encoder.mask_token", "encoder.layers.0.blocks.0.attn.qkv.bias", "lm_head.bias"} <= decay  # decayed, as in the seed
    assert groups["bevt_no_decay"]["weight_decay_mult"] == 0.0


def test_full_presets_follow_the_seed():
    for name in ("bevt_swinb_k400", "bevt_swinb_ssv2"):
        cfg = load_pretrain_config(name)
        m, o = cfg.method, cfg.optim
        assert (m.backbone, m.backbone_kwargs["drop_path_rate"], tuple(m.backbone_kwargs["window_size"])) == ("swin_bevt_b", 0.3, (8, 7, 7))
        assert (m.num_frames, m.stride, m.crop_size, m.cell, m.num_masked, m.min_mask_cells) == (16, 8, 224, 16, 98, 16)
        assert tuple(m.tube_range) == (0.5, 1.0) and m.target == "dalle" and m.tokenizer_size == 112
        assert (m.loss_weight_video, m.loss_weight_image, m.image_jitter, m.flip_p) == (1.0, 1.0, 0.4, 0.5)
        assert (o.name, o.lr, tuple(o.betas), o.weight_decay, o.warmup_epochs, o.grad_clip) == ("adamw", 5e-4, (0.9, 0.999), 0.05, 10, 3.0)
        assert o.warmup_start_lr == pytest.approx(0.1 * o.lr) and o.final_lr == 0.0
        assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.streams["image"].batch_size) == (150, 256, 2048)
        # the seed's image stream is ImageNet-1K train (§3.7): an ImageNet folder tree
        image_data = cfg.streams["image"]
        assert (image_data.root, image_data.format, image_data.split) == ("data/imagenet", "images", "train")
    image = load_pretrain_config("bevt_image_swinb_in1k")
    assert image.method.image_only and image.trainer.max_epochs == 800 and image.method.num_masked == 98
    assert (image.data.root, image.data.format) == ("data/imagenet", "images")
    # the CPU twins stay on frames of the embedded videos (no image files needed)
    tiny = load_pretrain_config("bevt_tiny").streams["image"]
    assert (tiny.root, tiny.format, tiny.generate_demo) == ("data/demo", "auto", True)
    assert load_pretrain_config("bevt_image_tiny").data.root == "data/demo"


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(ConfigError, match="method.tokenizer_path"):
        tiny_bevt("dalle")
    with pytest.raises(ConfigError, match="method.num_masked"):
        tiny_bevt(num_masked=17)
    with pytest.raises(ConfigError, match="SwinBEVT backbone"):
        tiny_bevt(backbone="r3d18_fgkv_tiny")
    cfg = pretrain_config_from_dict({"method": {"name": "bevt", "backbone": "swin_bevt_tiny", "target": "pixels"}})
    with pytest.raises(ConfigError, match="stream 'image': set streams.image.root"):
        METHODS["bevt"](cfg).data_streams()


def test_image_only_pretrain_on_the_embedded_dataset(demo_root, tmp_path):
    from vidssl.methods.train import pretrain

    cfg = load_pretrain_config("bevt_image_tiny", [f"data.root={demo_root}", "data.batch_size=4", "data.num_workers=0",
                                                   "max_steps=2", "log_every=1", "checkpoint_every=2"])
    run = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    assert (run / "encoder.safetensors").is_file()



def test_a_missing_image_root_names_the_key_to_set(demo_root, tmp_path):
    """The full presets' image stream defaults to data/imagenet: when it is not there, say which key to set."""
    from vidssl.data.module import StreamDataModule
    from vidssl.errors import DataError

    cfg = load_pretrain_config("bevt_tiny", [f"data.root={demo_root}", f"streams.image.root={tmp_path / 'imagenet'}",
                                             "streams.image.generate_demo=false"])
    data = StreamDataModule(METHODS["bevt"](cfg).data_streams(), seed=0, log=lambda _: None)
    with pytest.raises(DataError, match=r"data root '.*imagenet' does not exist; set streams.image.root=PATH"):
        data.setup()
