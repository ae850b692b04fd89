"""View positions, feature extraction and its on-disk cache (fake dataset + fake encoder)."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from vidssl.data.index import Manifest, VideoRecord
from vidssl.errors import ConfigError
from vidssl.eval.features import (
    EncoderInfo,
    FeatureSet,
    ViewProtocol,
    build_train_augment,
    cache_key,
    clip_plan,
    dataset_fingerprint,
    eval_views,
    extract_features,
    get_protocol,
    protocol_for,
)
from vidssl.models.contract import InputContract


def crop_offsets(protocol, height, width):
    """(y, x) of each spatial crop, read off the views themselves (pixel value = its coordinate)."""
    ys = torch.arange(height).view(1, 1, 1, height, 1, 1).expand(1, 1, 1, height, width, 3)
    xs = torch.arange(width).view(1, 1, 1, 1, width, 1).expand(1, 1, 1, height, width, 3)
    unit = dataclasses.replace(protocol, mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    view_y = eval_views(unit)(ys.to(torch.uint8))  # B×V×C×T×s×s
    view_x = eval_views(unit)(xs.to(torch.uint8))
    return [(round(float(view_y[0, v, 0, 0, 0, 0])), round(float(view_x[0, v, 0, 0, 0, 0]))) for v in range(view_y.shape[1])]


def test_long_side_crops_landscape_and_portrait():
    protocol = ViewProtocol("t", 1, 1, (64, 80), 56, temporal_clips=1, spatial_crops=3, crop_layout="long_side")
    assert crop_offsets(protocol, 64, 80) == [(4, 0), (4, 12), (4, 24)]  # left / centre / right
    assert crop_offsets(protocol, 80, 64) == [(0, 4), (12, 4), (24, 4)]  # top / centre / bottom
    one = dataclasses.replace(protocol, spatial_crops=1)
    assert crop_offsets(one, 64, 80) == [(4, 12)]


def test_diagonal_crops_like_brave():
    # BraVe A9: both offsets linspace(0, dim - 224, 3), zipped -> top-left, centre, bottom-right.
    protocol = get_protocol("brave", temporal_clips=1)
    assert crop_offsets(protocol, 256, 340) == [(0, 0), (16, 58), (32, 116)]


def test_view_order_is_clip_major():
    protocol = ViewProtocol("t", 1, 1, (8, 10), 6, temporal_clips=2, spatial_crops=3,
                            mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
    clips = torch.stack([torch.full((1, 8, 10, 3), k, dtype=torch.uint8) for k in range(2)])[None]  # B×K×T×H×W×C
    views = eval_views(protocol)(clips)
    assert views.shape == (1, 6, 3, 1, 6, 6)
    assert [int(views[0, v, 0, 0, 0, 0]) for v in range(6)] == [0, 0, 0, 1, 1, 1]  # view = k·S + s


def test_bad_protocol_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="1 or 3 spatial crops"):
        get_protocol("fgkvmem", spatial_crops=2)
    with pytest.raises(ConfigError, match="does not fit"):
        get_protocol("demo", crop_size=80)


def test_train_augment_shapes():
    for name in ("brave", "gdt", "fgkvmem", "demo"):
        protocol = ViewProtocol("t", 2, 1, (16, 20), 12, train_augment=name)
        out = build_train_augment(protocol)(torch.zeros(3, 2, 16, 20, 3, dtype=torch.uint8))
        assert out.shape == (3, 3, 2, 12, 12)


def test_protocol_temporal_starts_are_uniform():
    from vidssl.data.sampling import VideoShape

    protocol = get_protocol("fgkvmem")
    selection = clip_plan(protocol, augmented=False).sample(VideoShape(num_frames=151, fps=30.0))
    starts = selection.views["clip"].frame_indices[:, 0] + selection.start_frame
    span = (protocol.num_frames - 1) * protocol.stride + 1
    np.testing.assert_array_equal(starts, np.round(np.linspace(0, 151 - span, 10)).astype(int))
    assert protocol.views_per_video == 30


def test_get_protocol_unknown_and_override():
    assert get_protocol("demo", temporal_clips=1).temporal_clips == 1
    with pytest.raises(ConfigError, match="did you mean 'brave'"):
        get_protocol("bravee")


# ----------------------------------------------------------------------------- extraction + cache
class FakeManifest:
    """Enough of vidssl.data.index.Manifest for fingerprinting: subset(split, fold).records."""

    root = "/fake"

    def __init__(self, count):
        self.records = [SimpleNamespace(path=f"v{i}.mp4", label=i % 2, size=100, mtime=1.0) for i in range(count)]

    def subset(self, split="train", fold=1):
        return SimpleNamespace(records=self.records)


class FakeDataset(torch.utils.data.Dataset):
    """Items whose pixels equal the video index; records every read."""

    reads: list[int] = []

    def __init__(self, count, protocol, crash_after=None):
        self.count, self.protocol, self.crash_after = count, protocol, crash_after

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if self.crash_after is not None and len(FakeDataset.reads) >= self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        FakeDataset.reads.append(index)
        p = self.protocol
        clips = torch.full((p.temporal_clips, p.num_frames, *p.canvas, 3), index, dtype=torch.uint8)
        return {"video": {"clip": clips}, "label": index % 2, "index": index}


class MeanEncoder(nn.Module):
    """Embedding = per-channel mean of the input, so features are predictable."""

    def forward(self, x):
        return x.mean(dim=(2, 3, 4))


PROTOCOL = ViewProtocol("t", num_frames=2, stride=1, canvas=(8, 10), crop_size=6, temporal_clips=2, spatial_crops=3)


def factory(count, crash_after=None):
    return lambda manifest, protocol, split, fold, augmented, seed: FakeDataset(count, protocol, crash_after)


def run(tmp_path, count=5, crash_after=None, protocol=PROTOCOL, manifest=None):
    return extract_features(MeanEncoder(), EncoderInfo("fake", "abc"), manifest or FakeManifest(count), protocol,
                            "test", 1, cache_dir=tmp_path, batch_size=2, chunk_size=2, progress=False,
                            dataset_factory=factory(count, crash_after))


def test_extract_shapes_and_values(tmp_path):
    FakeDataset.reads = []
    result = run(tmp_path)
    assert result.features.shape == (5, 6, 3)
    assert result.labels.tolist() == [0, 1, 0, 1, 0]
    expected = (np.arange(5) / 255.0 - 0.45) / 0.225
    np.testing.assert_allclose(result.features[:, 0, 0], expected, rtol=1e-5)
    assert result.meta["cache"] == "miss"


def test_cache_resume_then_hit(tmp_path):
    FakeDataset.reads = []
    with pytest.raises(KeyboardInterrupt, match="simulated kill"):
        run(tmp_path, crash_after=3)  # chunk 0 (items 0,1) saved, killed inside chunk 1
    assert len(list(tmp_path.glob("*/part_*.npz"))) == 1
    FakeDataset.reads = []
    resumed = run(tmp_path)
    assert sorted(FakeDataset.reads) == [2, 3, 4]  # the saved chunk is not decoded again
    assert resumed.features.shape == (5, 6, 3)
    FakeDataset.reads = []
    again = run(tmp_path)
    assert FakeDataset.reads == [] and again.meta["cache"] == "hit"
    np.testing.assert_array_equal(again.features, resumed.features)
    assert not list(tmp_path.glob("*/part_*.npz"))  # chunks merged into features.npz


def test_cache_key_changes_with_encoder(tmp_path):
    FakeDataset.reads = []
    run(tmp_path)
    extract_features(MeanEncoder(), EncoderInfo("fake", "other"), FakeManifest(5), PROTOCOL, "test", 1,
                     cache_dir=tmp_path, progress=False, dataset_factory=factory(5))
    assert len(list(tmp_path.glob("*/features.npz"))) == 2


def test_featureset_roundtrip(tmp_path):
    fs = FeatureSet(np.ones((2, 3, 4), np.float32), np.array([0, 1]), np.array([0, 1]), {"a": 1})
    fs.save(tmp_path)
    back = FeatureSet.load(tmp_path)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.meta == {"a": 1}


# ----------------------------------------------------------------------------- nothing stale
def real_manifest(root, count=3):
    """A vidssl Manifest over ``count`` small files that exist on disk (contents: their index)."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        (root / f"v{i}.mp4").write_bytes(bytes([i]) * (10 + i))
        records.append(VideoRecord(path=f"v{i}.mp4", label=i % 2, label_name=f"c{i % 2}", splits={1: "test"}))
    return Manifest(str(root), ["c0", "c1"], records)


def test_fingerprint_changes_when_one_video_is_touched_or_rewritten(tmp_path):
    manifest = real_manifest(tmp_path / "data")
    first = dataset_fingerprint(manifest, "test", 1)
    assert dataset_fingerprint(manifest, "test", 1) == first  # stable while nothing changes
    video = tmp_path / "data" / "v1.mp4"
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # `touch`
    touched = dataset_fingerprint(manifest, "test", 1)
    assert touched != first
    # Rewritten with other bytes (another size) but the old mtime put back: the size still tells.
    video.write_bytes(b"\x01" * 99)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert dataset_fingerprint(manifest, "test", 1) not in (first, touched)


def test_fingerprint_uses_the_manifest_stamp_when_the_file_is_gone():
    manifest = FakeManifest(3)  # paths that do not exist: the records' size/mtime are used
    before = dataset_fingerprint(manifest, "test", 1)
    manifest.records[2].mtime = 2.0
    assert dataset_fingerprint(manifest, "test", 1) != before


def test_touching_a_video_misses_the_cache(tmp_path):
    FakeDataset.reads = []
    manifest = real_manifest(tmp_path / "data", count=5)
    first = run(tmp_path / "cache", manifest=manifest)
    assert first.meta["cache"] == "miss"
    assert run(tmp_path / "cache", manifest=manifest).meta["cache"] == "hit"
    video = tmp_path / "data" / "v3.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 5_000_000_000))
    FakeDataset.reads = []
    again = run(tmp_path / "cache", manifest=manifest)
    assert again.meta["cache"] == "miss" and sorted(FakeDataset.reads) == [0, 1, 2, 3, 4]
    assert again.meta["key"] != first.meta["key"]


def test_cache_key_covers_the_normalisation(tmp_path):
    other = dataclasses.replace(PROTOCOL, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    args = ("enc", "data", "test", 1, 0, 0)
    assert cache_key("enc", PROTOCOL, *args[1:]) != cache_key("enc", other, *args[1:])
    for field_name, value in [("crop_size", 4), ("stride", 2), ("num_frames", 3), ("crop_layout", "diagonal")]:
        changed = dataclasses.replace(PROTOCOL, **{field_name: value})
        assert cache_key("enc", changed, *args[1:]) != cache_key("enc", PROTOCOL, *args[1:]), field_name
    FakeDataset.reads = []
    normalised = run(tmp_path)
    raw = run(tmp_path, protocol=other)
    assert raw.meta["cache"] == "miss"  # not the features of the other normalisation
    np.testing.assert_allclose(raw.features[:, 0, 0], np.arange(5) / 255.0, rtol=1e-6)
    assert not np.allclose(raw.features, normalised.features)


# ----------------------------------------------------------------------------- the contract reaches the encoder
@pytest.mark.parametrize("mean, std", [((0.0,) * 3, (1.0,) * 3), ((0.45,) * 3, (0.225,) * 3)])
def test_extracted_features_use_the_contract_normalisation(tmp_path, mean, std):
    """BraVe feeds [0, 1] pixels, the BYOL family (x - 0.45) / 0.225: the encoder must see exactly that."""
    contract = InputContract(mean=mean, std=std, num_frames=2, stride=1, canvas=10, crop_size=6, eval_views="demo_quick")
    protocol = protocol_for(contract).protocol  # the demo geometry and normalisation of the contract
    assert (protocol.num_frames, protocol.canvas, protocol.crop_size) == (2, (10, 10), 6)
    FakeDataset.reads = []
    result = extract_features(MeanEncoder(), EncoderInfo("fake", "abc", contract=contract.to_dict()), FakeManifest(4),
                              protocol, "test", 1, cache_dir=tmp_path, progress=False, dataset_factory=factory(4))
    expected = (np.arange(4) / 255.0 - mean[0]) / std[0]  # pixel value = video index
    np.testing.assert_allclose(result.features[:, 0, :], np.repeat(expected[:, None], 3, axis=1), rtol=1e-5, atol=1e-6)
    saved = FeatureSet.load(tmp_path / result.meta["key"]).meta
    assert InputContract.from_dict(saved["input_contract"]) == contract and saved["protocol"]["mean"] == list(mean)
