"""BEVT checkpoints: 2-D → 3-D inflation keeps the function, and the released two-stream / image-stream
files (synthetic, with the official names and layout) load without running pickled code."""

from __future__ import annotations

import pytest
import torch

from vidssl.errors import UserError
from vidssl.methods.bevt import BEVTDecoders
from vidssl.models import load_encoder
from vidssl.models.backbones.swin import SwinBEVT
from vidssl.models.convert_bevt import (
    convert_bevt_checkpoint,
    inflate_2d_state,
    init_from_bevt_checkpoint,
    load_bevt_encoder,
    read_bevt_checkpoint,
)

SIZES = dict(embed_dim=8, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), drop_path_rate=0.0)


def image_swin_state(seed: int = 0) -> tuple[SwinBEVT, dict[str, torch.Tensor]]:
    """A 2-D Swin (a SwinBEVT with a one-frame window: table 13·13 per head) and its state under the
    official 2-D names (``patch_embed`` is the Conv2d; no ``patch_embed_2d``)."""
    torch.manual_seed(seed)
    model = SwinBEVT(window_size=(1, 7, 7), **SIZES).eval()
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("patch_embed.", "patch_embed_2d."))}
    for part in ("proj.weight", "proj.bias", "norm.weight", "norm.bias"):
        state[f"patch_embed.{part}"] = model.state_dict()[f"patch_embed_2d.{part}"].clone()
    state["fc_norm.weight"], state["fc_norm.bias"] = state.pop("norm.weight"), state.pop("norm.bias")
    return model, state


def test_inflation_shapes_follow_the_seed():
    _, state = image_swin_state()
    inflated = inflate_2d_state(state, (2, 4, 4), (8, 7, 7))
    assert inflated["patch_embed.proj.weight"].shape == (8, 3, 2, 4, 4)
    torch.testing.assert_close(inflated["patch_embed.proj.weight"][:, :, 0], state["patch_embed.proj.weight"] / 2)
    torch.testing.assert_close(inflated["patch_embed_2d.proj.weight"], state["patch_embed.proj.weight"])
    table = inflated["layers.0.blocks.0.attn.relative_position_bias_table"]
    assert table.shape == (15 * 169, 1)  # the 13·13 table tiled 15× along the temporal offsets
    torch.testing.assert_close(table.view(15, 169, 1)[3], state["layers.0.blocks.0.attn.relative_position_bias_table"])
    assert "norm.weight" in inflated and "fc_norm.weight" not in inflated
    resized = inflate_2d_state(state, (2, 4, 4), (8, 5, 5))  # another window: bicubic resize, then tiling
    assert resized["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (15 * 81, 1)


def test_inflated_model_computes_what_the_2d_model_computed():
    """The image path is unchanged, and a static clip gives the image's features in every frame."""
    image_model, state = image_swin_state()
    video_model = SwinBEVT(window_size=(8, 7, 7), **SIZES).eval()
    missing, unexpected = video_model.load_state_dict(inflate_2d_state(state, (2, 4, 4), (8, 7, 7)), strict=False)
    assert missing == [] and unexpected == []
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = image_model.forward_stages(image)
        after_image = video_model.forward_stages(image)
        after_clip = video_model.forward_stages(image.unsqueeze(2).repeat(1, 1, 4, 1, 1))  # 4 identical frames
    for b, a_img, a_clip in zip(before, after_image, after_clip):
        torch.testing.assert_close(a_img, b, atol=1e-5, rtol=1e-5)
        assert a_clip.shape[1] == 2
        torch.testing.assert_close(a_clip, b.expand_as(a_clip), atol=1e-4, rtol=1e-4)


def official_two_stream_file(path, model: SwinBEVT, decoders: BEVTDecoders, head: torch.nn.Linear):
    """An mmcv checkpoint laid out like the released two-stream one."""
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    for name, module in model.named_modules():  # the official blocks hold their index as a persistent buffer
        if name.endswith(".attn"):
            state[f"backbone.{name}.relative_position_index"] = module.relative_position_index
    state.update({f"backbone.{k}": v for k, v in decoders.state_dict().items()})
    state.update({f"cls_head.lm_head.{k}": v for k, v in head.state_dict().items()})
    torch.save({"meta": {"epoch": 150, "iter": 1000, "mmcv_version": "1.3.1", "config": "model = dict(...)"},
                "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.05}]}}, path)


def test_two_stream_checkpoint_converts_to_a_vidssl_encoder(tmp_path):
    torch.manual_seed(0)
    model = SwinBEVT(window_size=(2, 4, 4), **SIZES).eval()
    decoders, head = BEVTDecoders(64, 2), torch.nn.Linear(64, 8192)
    official_two_stream_file(tmp_path / "bevt.pth", model, decoders, head)
    with pytest.raises(UserError, match="'mask_token' has shape"):  # other sizes: an error naming the tensor
        convert_bevt_checkpoint(tmp_path / "bevt.pth", tmp_path / "wrong", backbone="swin_bevt_tiny")
    written = convert_bevt_checkpoint(tmp_path / "bevt.pth", tmp_path / "out", backbone="swin_bevt_tiny",
                                      kwargs={**SIZES, "window_size": [2, 4, 4]})
    assert set(written) == {"encoder", "heads"}
    encoder = load_encoder(tmp_path / "out")
    assert encoder.input_contract.crop_size == 224 and encoder.input_contract.mean == (0.485, 0.456, 0.406)
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(clip), model(clip))
    from safetensors.torch import load_file

    heads = load_file(str(written["heads"]))
    assert heads["lm_head.weight"].shape == (8192, 64) and "decoders.fpn_t.0.weight" in heads


def test_image_stream_checkpoint_is_inflated_on_load(tmp_path):
    image_model, state = image_swin_state()
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items()}}, tmp_path / "image_stream.pth")
    encoder = load_bevt_encoder(tmp_path / "image_stream.pth", "swin_bevt_tiny",
                                {**SIZES, "window_size": (8, 7, 7), "image_quirks": False})
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_stages(image)[-1], image_model.forward_stages(image)[-1], atol=1e-5, rtol=1e-5)


def test_two_stream_pretraining_starts_from_the_image_stream(tmp_path):
    from vidssl.methods import METHODS
    from vidssl.methods.train import load_pretrain_config

    _, state = image_swin_state()
    torch.save({"model": state}, tmp_path / "image_stream.pth")
    cfg = load_pretrain_config("bevt_tiny", [f"method.init_checkpoint={tmp_path / 'image_stream.pth'}",
                                             'method.backbone_kwargs={"embed_dim": 8, "depths": [1, 1, 2, 1], '
                                             '"num_heads": [1, 1, 2, 2], "window_size": [2, 7, 7]}'])
    method = METHODS["bevt"](cfg)
    torch.testing.assert_close(method.encoder.patch_embed_2d.proj.weight, state["patch_embed.proj.weight"])
    torch.testing.assert_close(method.encoder.norm.weight, state["fc_norm.weight"])


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("never",))

    torch.save({"state_dict": {"x": Exploit()}}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="safely"):
        read_bevt_checkpoint(tmp_path / "bad.pth")
    with pytest.raises(UserError, match="does not exist"):
        read_bevt_checkpoint(tmp_path / "missing.pth")
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(4, 3, 2, 4, 4)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="does not match swin_bevt_tiny"):
        load_bevt_encoder(tmp_path / "other.pth", "swin_bevt_tiny")


def test_ssv2_window_is_resized_from_the_pretrained_one(tmp_path):
    """Pretrained window 2×4×4 → 4×4×4 (the seed: 8×7×7 → 16×7×7), trilinear over the offset grid."""
    torch.manual_seed(0)
    model = SwinBEVT(window_size=(2, 4, 4), **SIZES).eval()
    table = model.layers[0].blocks[0].attn.relative_position_bias_table
    table.data = table.data.view(3, 49, 1)[1:2].repeat(3, 1, 1).view(-1, 1)  # the same plane at every dt
    official_two_stream_file(tmp_path / "bevt.pth", model, BEVTDecoders(64, 2), torch.nn.Linear(64, 16))
    with pytest.raises(UserError, match="has shape"):  # without the pretrained window: refused, not mis-loaded
        load_bevt_encoder(tmp_path / "bevt.pth", "swin_bevt_tiny", {**SIZES, "window_size": [4, 4, 4]})
    encoder = load_bevt_encoder(tmp_path / "bevt.pth", "swin_bevt_tiny", {**SIZES, "window_size": [4, 4, 4]},
                                pretrained_window=(2, 4, 4))
    resized = encoder.layers[0].blocks[0].attn.relative_position_bias_table.detach().view(7, 49, 1)
    assert resized.shape == (7, 49, 1)
    torch.testing.assert_close(resized, resized[3:4].expand(7, 49, 1))  # constant along dt stays constant
    torch.testing.assert_close(resized[3], table.detach().view(3, 49, 1)[1])
