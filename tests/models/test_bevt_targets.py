"""BEVT's targets: normalised pixels, HOG, the tokenizer input (Lanczos 112², ε-mapping), the DALL-E
encoder read from a pickled module without running it, and the VQ tokenizer vidssl trains."""

from __future__ import annotations

import math
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.errors import UserError
from vidssl.models.targets import hog_targets, lanczos_resize, map_pixels, pixel_targets
from vidssl.models.tokenizers import (
    DalleEncoder,
    VQTokenizer,
    convert_dalle_encoder,
    load_tokenizer,
    read_dalle_pickle,
    save_vq_tokenizer,
    train_vq_tokenizer,
)


def test_pixel_targets_are_each_cells_pixels_normalised_per_channel():
    x = torch.rand(2, 3, 4, 32, 48)
    t = pixel_targets(x, 16)
    assert t.shape == (2, 4, 2, 3, 16 * 16 * 3)
    cell = x[1, :, 2, 16:32, 32:48]  # C×16×16: frame 2, grid cell (1, 2)
    expected = ((cell - cell.mean(dim=(1, 2), keepdim=True)) / (cell.std(dim=(1, 2), keepdim=True) + 1e-6))
    torch.testing.assert_close(t[1, 2, 1, 2], expected.permute(1, 2, 0).reshape(-1))
    image = pixel_targets(x[:, :, 0], 16)
    torch.testing.assert_close(image[:, 0], t[:, 0])


def test_hog_targets_see_orientation_and_are_normalised():
    vertical = torch.zeros(1, 3, 32, 32)
    vertical[..., 16:] = 1.0  # a vertical edge: horizontal gradient, orientation 0
    horizontal = vertical.transpose(-1, -2).contiguous()
    hv, hh = hog_targets(vertical, 16), hog_targets(horizontal, 16)
    assert hv.shape == (1, 1, 2, 2, 3 * 9 * 4)
    bins_v = hv[0, 0, 0, 1].view(3, 4, 9).sum(dim=(0, 1))
    bins_h = hh[0, 0, 1, 0].view(3, 4, 9).sum(dim=(0, 1))
    assert int(bins_v.argmax()) == 0  # orientation 0 (gradient along x)
    assert int(bins_h.argmax()) == 4 or int(bins_h.argmax()) == 5  # ~π/2 falls between bins 4 and 5
    norms = hv[0, 0, 0, 1].view(3, 36).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(3))
    with pytest.raises(ValueError, match="multiple of 16"):
        hog_targets(torch.rand(1, 3, 30, 32), 16)


def test_tokenizer_input_is_opencv_lanczos_then_the_dalle_mapping():
    import cv2

    image = np.random.RandomState(0).rand(224, 224).astype(np.float32)
    expected = cv2.resize(image, (112, 112), interpolation=cv2.INTER_LANCZOS4)  # mmcv imresize 'lanczos'
    ours = lanczos_resize(torch.from_numpy(image)[None, None], (112, 112))[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    from PIL import Image

    pil = np.asarray(Image.fromarray(image, mode="F").resize((112, 112), Image.LANCZOS))
    np.testing.assert_allclose(lanczos_resize(torch.from_numpy(image), (112, 112), kernel="pil").numpy(), pil, atol=1e-5)
    mapped = map_pixels(torch.rand(1000))
    assert float(mapped.min()) >= 0.1 and float(mapped.max()) <= 0.9  # MapPixels range [0.1, 0.9]


# ------------------------------------------------------------------------------------------------ DALL-E


def _fake_dall_e_package():
    """Classes named like the ``dall-e`` package's (``dall_e.encoder.Encoder`` …) with its attributes and
    forward, to write a pickled module the way ``encoder.pkl`` is one."""
    utils, encoder_mod = types.ModuleType("dall_e.utils"), types.ModuleType("dall_e.encoder")

    class Conv2d(nn.Module):
        def __init__(self, n_in, n_out, kw, use_float16=True):
            super().__init__()
            self.n_in, self.n_out, self.kw, self.use_float16 = n_in, n_out, kw, use_float16
            self.device, self.requires_grad = torch.device("cpu"), False
            self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw * kw))
            self.b = nn.Parameter(torch.randn(n_out) * 0.1)

        def forward(self, x):
            return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)

    class EncoderBlock(nn.Module):
        def __init__(self, n_in, n_out, n_layers):
            super().__init__()
            self.n_in, self.n_out, self.n_layers = n_in, n_out, n_layers
            self.n_hid = n_out // 4
            self.post_gain = 1 / n_layers**2
            self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
            self.res_path = nn.Sequential(OrderedDict([
                ("relu_1", nn.ReLU()), ("conv_1", Conv2d(n_in, self.n_hid, 3)), ("relu_2", nn.ReLU()),
                ("conv_2", Conv2d(self.n_hid, self.n_hid, 3)), ("relu_3", nn.ReLU()),
                ("conv_3", Conv2d(self.n_hid, self.n_hid, 3)), ("relu_4", nn.ReLU()),
                ("conv_4", Conv2d(self.n_hid, n_out, 1))]))

        def forward(self, x):
            return self.id_path(x) + self.post_gain * self.res_path(x)

    class Encoder(nn.Module):
        def __init__(self, group_count=4, n_hid=256, n_blk_per_group=2, input_channels=3, vocab_size=8192):
            super().__init__()
            self.group_count, self.n_hid, self.n_blk_per_group = group_count, n_hid, n_blk_per_group
            self.input_channels, self.vocab_size = input_channels, vocab_size
            self.device, self.requires_grad, self.use_mixed_precision = torch.device("cpu"), False, True
            n_layers = group_count * n_blk_per_group
            blk = range(n_blk_per_group)

            def group(i_in, i_out, pool):
                items = [(f"block_{i + 1}", EncoderBlock(i_in * n_hid if i == 0 else i_out * n_hid, i_out * n_hid, n_layers)) for i in blk]
                return nn.Sequential(OrderedDict(items + ([("pool", nn.MaxPool2d(kernel_size=2))] if pool else [])))

            self.blocks = nn.Sequential(OrderedDict([
                ("input", Conv2d(input_channels, n_hid, 7)),
                ("group_1", group(1, 1, True)), ("group_2", group(1, 2, True)), ("group_3", group(2, 4, True)),
                ("group_4", group(4, 8, False)),
                ("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(8 * n_hid, vocab_size, 1, use_float16=False))])))]))

        def forward(self, x):
            return self.blocks(x)

    for cls, module in ((Conv2d, utils), (EncoderBlock, encoder_mod), (Encoder, encoder_mod)):
        cls.__module__ = module.__name__
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    return types.ModuleType("dall_e"), encoder_mod, utils


@pytest.fixture
def fake_encoder_pkl(tmp_path, monkeypatch):
    """A small ``encoder.pkl`` written like the official one (torch.save of the module), and the module."""
    package, encoder_mod, utils = _fake_dall_e_package()
    monkeypatch.setitem(sys.modules, "dall_e", package)
    monkeypatch.setitem(sys.modules, "dall_e.encoder", encoder_mod)
    monkeypatch.setitem(sys.modules, "dall_e.utils", utils)
    torch.manual_seed(0)
    model = encoder_mod.Encoder(n_hid=8, vocab_size=16).eval()
    path = tmp_path / "encoder.pkl"
    torch.save(model, path)
    for name in ("dall_e", "dall_e.encoder", "dall_e.utils"):  # reading must not need the package
        monkeypatch.delitem(sys.modules, name)
    return path, model


def test_dalle_encoder_pickle_is_read_without_running_it(fake_encoder_pkl, tmp_path):
    path, reference = fake_encoder_pkl
    weights, sizes = read_dalle_pickle(path)
    assert sizes == {"group_count": 4, "n_hid": 8, "n_blk_per_group": 2, "input_channels": 3, "vocab_size": 16}
    assert "blocks.group_2.block_1.id_path.w" in weights and "blocks.output.conv.b" in weights
    ours = load_tokenizer(path, "dalle")
    x = map_pixels(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
    converted = convert_dalle_encoder(path, tmp_path / "encoder.safetensors")
    again = load_tokenizer(converted, "dalle")
    frames = torch.rand(2, 3, 4, 64, 64)  # a clip of 4 frames, 4×4 prediction grid → 32² tokenizer input
    ids = again.tokens(frames, 4)
    assert ids.shape == (2, 4, 4, 4) and int(ids.max()) < 16
    flat = frames.transpose(1, 2).reshape(8, 3, 64, 64)
    expected = reference(map_pixels(lanczos_resize(flat, (32, 32)).clamp(0, 1))).argmax(1).view(2, 4, 4, 4)
    assert torch.equal(ids, expected)
    with pytest.raises(UserError, match="'dalle' tokenizer, but method.target=vq"):
        load_tokenizer(converted, "vq")


def test_official_dalle_sizes_and_names():
    with torch.device("meta"):
        encoder = DalleEncoder()
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert shapes["blocks.input.w"] == (256, 3, 7, 7)
    assert shapes["blocks.group_1.block_1.res_path.conv_1.w"] == (64, 256, 3, 3)
    assert shapes["blocks.group_4.block_1.id_path.w"] == (2048, 1024, 1, 1)
    assert shapes["blocks.output.conv.w"] == (8192, 2048, 1, 1)
    assert "blocks.group_1.block_1.id_path.w" not in shapes  # identity where widths match
    assert encoder.downsampling == 8


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "encoder.pkl"
    torch.save({"blocks": _Exploit()}, path)
    with pytest.raises(UserError, match="cannot read .* safely"):
        read_dalle_pickle(path)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"weights": torch.zeros(2)}, f)
    with pytest.raises(UserError):
        read_dalle_pickle(tmp_path / "plain.pkl")
    with pytest.raises(UserError, match="does not exist"):
        read_dalle_pickle(tmp_path / "missing.pkl")


# ------------------------------------------------------------------------------------------------ VQ


def test_vq_tokenizer_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = VQTokenizer(vocab_size=16, hidden=16, code_dim=8)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    images = torch.stack([torch.stack([xx, yy, 1 - xx]), torch.stack([yy, 1 - yy, xx]),
                          (torch.stack([xx, xx, yy]) > 0.5).float(), torch.stack([1 - xx * yy, xx * yy, yy])])

    def batches():
        while True:
            yield images[torch.randint(0, 4, (8,))]

    losses = train_vq_tokenizer(batches(), model, 80, lr=3e-3, log=lambda _: None, restart_every=20)
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5])  # measured: 0.141 → 0.087
    path = save_vq_tokenizer(model.eval(), tmp_path / "vq.safetensors")
    loaded = load_tokenizer(path, "vq")
    frames = torch.rand(2, 3, 2, 32, 32)
    assert torch.equal(loaded.tokens(frames, 4), model.tokens(frames, 4))
    assert loaded.tokens(frames, 4).shape == (2, 2, 4, 4)


def test_tokenizer_train_command(demo_root, tmp_path, capsys):
    from vidssl.cli import main

    out = tmp_path / "vq.safetensors"
    assert main(["tokenizer", "train", "--data", str(demo_root), "--out", str(out), "--size", "32", "--vocab", "8",
                 "--hidden", "8", "--code-dim", "4", "--steps", "3", "--batch-size", "4", "--num-workers", "0"]) == 0
    assert load_tokenizer(out, "vq").vocab_size == 8
    assert main(["tokenizer", "train", "--data", str(demo_root), "--out", str(out), "--size", "30"]) == 2
    assert "--size must be a multiple of 8" in capsys.readouterr().err
