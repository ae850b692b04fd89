"""BraVe checkpoint converter: safe reading, official names/shapes, exact outputs vs a Haiku-style reference."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.errors import UserError
from vidssl.models.convert_brave import (
    convert_brave_checkpoint,
    encoder_spec,
    load_brave_tsm,
    parse_tsm,
    read_brave_npy,
    tsm_state_dict,
)

UNIT_CHANNELS = (256, 512, 1024, 2048)


def synthetic_checkpoint(width: float = 1, blocks=(3, 4, 6, 3), seed: int = 0, prefixes=("narrow_video_embedding",),
                         zeros: bool = False):
    """A dict shaped like BraVe's released checkpoints: haiku module paths, HWIO kernels, [1,1,1,C] BN.

    ``zeros=True`` leaves the kernels at zero (fast, for name/shape checks)."""
    rng = np.random.default_rng(seed)
    params, state = {}, {}

    def conv(path, k, cin, cout):
        if zeros:
            params[path] = {"w": np.zeros((k, k, cin, cout), np.float32)}
            return
        params[path] = {"w": (rng.standard_normal((k, k, cin, cout)) / math.sqrt(k * k * cin)).astype(np.float32)}

    def bn(path, c):
        params[path] = {
            "scale": (1 + 0.1 * rng.standard_normal((1, 1, 1, c))).astype(np.float32),
            "offset": (0.1 * rng.standard_normal((1, 1, 1, c))).astype(np.float32),
        }
        for kind, value in (("mean", 0.1 * rng.standard_normal((1, 1, 1, c))), ("var", rng.uniform(0.5, 1.5, (1, 1, 1, c)))):
            state[f"{path}/~/{kind}_ema"] = {
                "average": value.astype(np.float32),
                "hidden": value.astype(np.float32),
                "counter": np.array(1000, dtype=np.int32),
            }

    for prefix in prefixes:
        root = f"{prefix}/TSMResNetV2"
        stem = int(64 * width)
        conv(f"{root}/tsm_resnet_stem", 7, 3, stem)
        cin = stem
        for u, (c, n) in enumerate(zip(UNIT_CHANNELS, blocks)):
            cout = int(c * width)
            mid = cout // 4
            for b in range(n):
                path = f"{root}/tsm_resnet_unit_{u}/block_{b}"
                block_in = cin if b == 0 else cout
                bn(f"{path}/batch_norm", block_in)
                if b == 0:
                    conv(f"{path}/shortcut_conv", 1, block_in, cout)
                conv(f"{path}/conv_0", 1, block_in, mid)
                bn(f"{path}/batch_norm_1", mid)
                conv(f"{path}/conv_1", 3, mid, mid)
                bn(f"{path}/batch_norm_2", mid)
                conv(f"{path}/conv_2", 1, mid, cout)
            cin = cout
        bn(f"{root}/batch_norm", cin)
    # the rest of a real checkpoint: heads and the audio net are ignored by the converter
    params["shared_project/projector/linear"] = {"w": np.zeros((4, 4), np.float32), "b": np.zeros(4, np.float32)}
    params["broad_audio_embedding/res_net_v2/initial_conv"] = {"w": np.zeros((7, 7, 1, 64), np.float32)}
    config = {"num_frames_narrow": 16, "tsm_resnet_width_multiplier": int(max(width, 1)), "output_dims": 128}
    return {"params": params, "state": state, "config": config}


def save_npy(obj, path):
    np.save(path, np.array(obj, dtype=object), allow_pickle=True)
    return path


# ----------------------------------------------------------------- an independent Haiku-style reference


def _same_pad(x, k, s):
    pads = []
    for length in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _conv(x, w_hwio, stride=1):
    w = torch.from_numpy(w_hwio).permute(3, 2, 0, 1)
    return F.conv2d(F.pad(x, _same_pad(x, w.shape[-1], stride)), w, stride=stride)


def _bn(x, params, state, path):
    scale, offset = (torch.from_numpy(params[path][k].reshape(-1)) for k in ("scale", "offset"))
    mean = torch.from_numpy(state[f"{path}/~/mean_ema"]["average"].reshape(-1))
    var = torch.from_numpy(state[f"{path}/~/var_ema"]["average"].reshape(-1))
    return F.batch_norm(x, mean, var, scale, offset, training=False, eps=1e-5)


def _brave_shift(x, t):
    """BraVe's temporal_shift_gpu on (B·T)×C×H×W: [x[t+1][C-n:], x[t][n:C-n], x[t-1][:n]]."""
    bt, c, h, w = x.shape
    n = int(c * 0.125)
    clips = x.reshape(-1, t, c, h, w)
    zeros = torch.zeros_like(clips[:, :1, :n])
    backward = torch.cat([clips[:, 1:, c - n :], zeros], dim=1)
    forward = torch.cat([zeros, clips[:, :-1, :n]], dim=1)
    return torch.cat([backward, clips[:, :, n : c - n], forward], dim=2).reshape(bt, c, h, w)


def reference_embedding(ckpt, video, prefix="narrow_video_embedding"):
    """BraVe's TSMResNetV2 (eval mode) straight from the haiku dict. video: B×3×T×H×W."""
    params, state = ckpt["params"], ckpt["state"]
    root = f"{prefix}/TSMResNetV2"
    b, c, t, h, w = video.shape
    x = video.transpose(1, 2).reshape(b * t, c, h, w)
    x = _conv(x, params[f"{root}/tsm_resnet_stem"]["w"], 2)
    x = F.max_pool2d(F.pad(x, _same_pad(x, 3, 2), value=-math.inf), 3, 2)
    u = 0
    while f"{root}/tsm_resnet_unit_{u}/block_0/conv_0" in params:
        blk = 0
        while f"{root}/tsm_resnet_unit_{u}/block_{blk}/conv_0" in params:
            path = f"{root}/tsm_resnet_unit_{u}/block_{blk}"
            stride = 2 if (u > 0 and blk == 0) else 1
            preact = F.relu(_bn(x, params, state, f"{path}/batch_norm"))
            shortcut = _conv(preact, params[f"{path}/shortcut_conv"]["w"], stride) if blk == 0 else x
            r = _conv(_brave_shift(preact, t), params[f"{path}/conv_0"]["w"])
            r = _conv(F.relu(_bn(r, params, state, f"{path}/batch_norm_1")), params[f"{path}/conv_1"]["w"], stride)
            r = _conv(F.relu(_bn(r, params, state, f"{path}/batch_norm_2")), params[f"{path}/conv_2"]["w"])
            x = shortcut + r
            blk += 1
        u += 1
    x = F.relu(_bn(x, params, state, f"{root}/batch_norm"))
    return x.mean(dim=(2, 3)).reshape(b, t, -1).mean(dim=1)


# ----------------------------------------------------------------- tests


def test_official_names_and_shapes_of_tsm50_map_onto_vidssl(tmp_path):
    ckpt = synthetic_checkpoint(width=1)
    net = parse_tsm(ckpt)
    assert net.blocks == (3, 4, 6, 3) and net.width_multiplier == 1 and net.in_channels == 3
    model, name, kwargs = load_brave_tsm(ckpt)
    assert name == "tsm_resnet50" and kwargs == {"tf_same_padding": True}
    assert model.embed_dim == 2048
    sd = model.state_dict()
    entries = tsm_state_dict(net)
    for key, value in entries.items():
        np.testing.assert_array_equal(sd[key].numpy(), value)
    stem = ckpt["params"]["narrow_video_embedding/TSMResNetV2/tsm_resnet_stem"]["w"]
    np.testing.assert_array_equal(sd["tsm_resnet_stem.weight"].numpy(), stem.transpose(3, 2, 0, 1))
    # every float tensor of the model came from the checkpoint
    assert {k for k in sd if not k.endswith("num_batches_tracked")} == set(entries)


def test_width_two_is_detected():
    net = parse_tsm(synthetic_checkpoint(width=2, blocks=(3, 4, 6, 3), zeros=True))
    assert net.width_multiplier == 2 and net.final_bn.scale.shape == (4096,)
    assert encoder_spec(net) == ("tsm_resnet50", {"tf_same_padding": True, "width_mult": 2})


def test_converted_model_matches_the_haiku_reference_exactly(tmp_path):
    ckpt = synthetic_checkpoint(width=0.125, blocks=(1, 2, 1, 1), seed=1)
    path = save_npy(ckpt, tmp_path / "brave.npy")
    model, _, _ = load_brave_tsm(path)
    video = torch.rand(2, 3, 4, 33, 47, generator=torch.Generator().manual_seed(0))  # odd sizes: SAME padding matters
    with torch.no_grad():
        ours = model(video)
        ref = reference_embedding(ckpt, video)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_convert_writes_an_encoder_the_library_loads(tmp_path):
    from vidssl.models import load_encoder

    ckpt = synthetic_checkpoint(width=0.125, blocks=(1, 1, 1, 1), seed=2, prefixes=("narrow_video_embedding", "broad_video_embedding"))
    path = save_npy(ckpt, tmp_path / "brave.npy")
    out = convert_brave_checkpoint(path, tmp_path / "run")
    assert out == tmp_path / "run" / "encoder.safetensors" and out.is_file()
    encoder = load_encoder(out).eval()
    video = torch.rand(1, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(video), reference_embedding(ckpt, video))
    broad = convert_brave_checkpoint(path, tmp_path / "broad.safetensors", view="broad")
    with torch.no_grad():
        torch.testing.assert_close(
            load_encoder(broad).eval()(video), reference_embedding(ckpt, video, "broad_video_embedding")
        )


def test_haiku_flatmapping_pickles_are_read_as_dicts(tmp_path, monkeypatch):
    """Checkpoints may hold haiku's FlatMapping (pickled as FlatMapping(dict)); no haiku needed to read them."""
    import sys
    import types

    class FlatMapping(dict):
        def __reduce__(self):
            return FlatMapping, (dict(self),)

    FlatMapping.__module__ = "haiku._src.data_structures"
    FlatMapping.__qualname__ = "FlatMapping"
    stubs = {name: types.ModuleType(name) for name in ("haiku", "haiku._src", "haiku._src.data_structures")}
    stubs["haiku._src.data_structures"].FlatMapping = FlatMapping
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    ckpt = synthetic_checkpoint(width=0.125, blocks=(1, 1, 1, 1))
    ckpt["params"] = FlatMapping({k: FlatMapping(v) for k, v in ckpt["params"].items()})
    path = save_npy(ckpt, tmp_path / "flat.npy")
    for name in stubs:  # reading must not need haiku
        monkeypatch.delitem(sys.modules, name)
    loaded = read_brave_npy(path)
    assert type(loaded["params"]) is dict and loaded["config"]["output_dims"] == 128
    load_brave_tsm(loaded)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = save_npy({"params": {"x": _Exploit(marker)}, "state": {}, "config": {}}, tmp_path / "evil.npy")
    with pytest.raises(UserError, match="refusing to load '(posix|nt|os).system'"):
        read_brave_npy(path)
    assert not marker.exists()


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_brave_npy(tmp_path / "missing.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(UserError, match="not a .npy file"):
        read_brave_npy(tmp_path / "text.npy")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(UserError, match="not BraVe's pickled checkpoint"):
        read_brave_npy(tmp_path / "plain.npy")
    save_npy({"weights": 1}, tmp_path / "other.npy")
    with pytest.raises(UserError, match="expected a dict with 'params'"):
        read_brave_npy(tmp_path / "other.npy")
    ckpt = synthetic_checkpoint(width=0.125, blocks=(1, 1, 1, 1))
    with pytest.raises(UserError, match="no TSM network under 'broad_video_embedding'"):
        load_brave_tsm(ckpt, view="broad")
    with pytest.raises(UserError, match="view must be"):
        load_brave_tsm(ckpt, view="audio")
    del ckpt["state"]["narrow_video_embedding/TSMResNetV2/batch_norm/~/var_ema"]
    with pytest.raises(UserError, match="var_ema"):
        load_brave_tsm(ckpt)
