"""Optical flow for BraVe's broad flow view: OpenCV flow, int8 cache, view fitting, flow views of a dataset."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from vidssl.data.datasets import VideoDataset
from vidssl.data.flow import (
    CACHE_DIRNAME,
    FlowCache,
    compute_flow,
    dequantize_flow,
    flow_view,
    quantize_flow,
)
from vidssl.data.index import build_manifest
from vidssl.data.sampling import FlowOptions, ViewSpec, ViewsPlan
from vidssl.errors import ConfigError, DataError


def translating_pattern(num_frames: int = 6, size: int = 64, dx: int = 2, dy: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth random texture moving by (dx, dy) pixels per frame: ``T×H×W×3`` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, size=(size * 2, size * 2), dtype=np.uint8)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    for t in range(num_frames):
        # content moves right/down: the window moves left/up over the texture
        y0, x0 = size // 2 - t * dy, size // 2 - t * dx
        crop = big[y0 : y0 + size, x0 : x0 + size]
        frames.append(np.repeat(crop[..., None], 3, axis=-1))
    return np.stack(frames)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_of_a_translation_is_the_shift(method):
    frames = translating_pattern(dx=2, dy=1)
    flow = compute_flow(frames, method)
    assert flow.shape == (6, 64, 64, 2) and flow.dtype == np.float32
    inner = flow[:-1, 12:-12, 12:-12]  # away from the borders, where the motion is observable
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(1.0, abs=0.25)
    np.testing.assert_array_equal(flow[-1], flow[-2])  # the last frame repeats the previous flow


def test_flow_resized_to_short_side_scales_the_vectors():
    flow = compute_flow(translating_pattern(dx=4, dy=0), "dis", short_side=32)
    assert flow.shape[1:3] == (32, 32)
    assert np.median(flow[:-1, 6:-6, 6:-6, 0]) == pytest.approx(2.0, abs=0.3)


def test_single_frame_has_zero_flow():
    flow = compute_flow(translating_pattern(num_frames=1), "dis")
    assert flow.shape == (1, 64, 64, 2) and not flow.any()


def test_compute_flow_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown optical flow method 'tvl1'"):
        compute_flow(translating_pattern(), "tvl1")
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(translating_pattern().astype(np.float32), "dis")
    with pytest.raises(ValueError, match="T×H×W×3"):
        compute_flow(np.zeros((0, 8, 8, 3), np.uint8), "dis")


def test_quantisation_round_trip():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, size=(4, 8, 8, 2)).astype(np.float32)
    codes, scale = quantize_flow(flow)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    np.testing.assert_allclose(dequantize_flow(codes, scale), flow, atol=scale / 2 + 1e-6)
    zero_codes, zero_scale = quantize_flow(np.zeros((2, 4, 4, 2), np.float32))
    assert zero_scale == 1.0 and not zero_codes.any()


def test_cache_computes_once_then_reads(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video; the loader below is injected")
    calls = []

    def loader(path, short_side):
        calls.append((path, short_side))
        return translating_pattern(dx=2, dy=1, size=48), 25.0

    cache = FlowCache(tmp_path, method="dis", short_side=48, frame_loader=loader)
    first = cache.get(video)
    assert cache.computed == 1 and len(calls) == 1
    cached_files = list((tmp_path / CACHE_DIRNAME).glob("*.npz"))
    assert cached_files == [cache.path_for(video)]
    assert first.codes.dtype == np.int8 and first.num_frames == 6 and first.fps == 25.0

    again = FlowCache(tmp_path, method="dis", short_side=48, frame_loader=loader).get(video)
    assert len(calls) == 1  # read from disk, not recomputed
    np.testing.assert_array_equal(again.codes, first.codes)
    # content: mean flow in the interior ≈ the shift
    inner = again.frames(np.arange(5))[:, 10:-10, 10:-10]
    assert inner[..., 0].mean() == pytest.approx(2.0, abs=0.3)
    assert inner[..., 1].mean() == pytest.approx(1.0, abs=0.3)
    # indices wrap around like the looped video
    np.testing.assert_array_equal(again.frames([6, 7]), again.frames([0, 1]))

    # another method or resolution is another cache entry
    FlowCache(tmp_path, method="farneback", short_side=48, frame_loader=loader).get(video)
    assert len(calls) == 2


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    loader = lambda path, side: (translating_pattern(size=32), 25.0)  # noqa: E731
    cache = FlowCache(tmp_path, short_side=32, frame_loader=loader)
    cache.path_for(video).parent.mkdir(parents=True)
    cache.path_for(video).write_bytes(b"truncated")
    assert cache.get(video).num_frames == 6 and cache.computed == 1


def test_cache_rejects_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown optical flow method"):
        FlowCache(tmp_path, method="raft")
    with pytest.raises(ConfigError, match="short_side"):
        FlowCache(tmp_path, short_side=2)


def test_flow_view_fits_canvas_and_rescales_vectors():
    flow = np.zeros((3, 32, 48, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -1.0  # pixels at 32×48
    view = flow_view(flow, (64, 64), max_pixels=20.0)
    assert view.shape == (2, 3, 64, 64) and view.dtype == np.float32
    # short side 32 -> 64: ×2 on both axes (aspect kept, then centre crop)
    np.testing.assert_allclose(view[0], 4.0 / 20.0, rtol=1e-5)
    np.testing.assert_allclose(view[1], -2.0 / 20.0, rtol=1e-5)
    big = flow_view(flow * 100, 16)
    assert big.shape == (2, 3, 16, 16) and big.max() == 1.0 and big.min() == -1.0


@pytest.fixture()
def motion_root(tmp_path, demo_root):
    """ROOT/train/moving/*.mp4: two videos of the embedded dataset (50 frames with motion, 64×64)."""
    sources = sorted(demo_root.rglob("*.mp4"))[:2]
    for k, source in enumerate(sources):
        target = tmp_path / "train" / "moving" / f"clip_{k}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return tmp_path


def flow_plan(num_frames: int = 20, stride: int = 4, options: FlowOptions | None = None, with_video: bool = True):
    flow = ViewSpec("flow", kind="flow", num_frames=num_frames, stride=stride, canvas=(32, 32),
                    align_to="narrow" if with_video else None,
                    flow=options or FlowOptions(short_side=32, max_pixels=2.0))
    video = [ViewSpec("narrow", num_frames=4, stride=2, canvas=(32, 32))] if with_video else []
    return ViewsPlan(video + [flow])


@pytest.mark.parametrize("num_frames, stride, looped", [(20, 4, True), (8, 1, False)])  # 77 frames > 50: loops
def test_flow_view_holds_the_cached_flow_at_its_frames(motion_root, num_frames, stride, looped):
    """A view of kind "flow" holds the cached flow at exactly its source frames (looped like the video)."""
    manifest = build_manifest(motion_root)
    plan = flow_plan(num_frames, stride)
    dataset = VideoDataset(manifest, plan, seed=2)
    item = dataset[0]
    assert set(item["clips"]) == {"narrow", "flow"} and bool(item["valid"]["flow"])
    assert item["clips"]["flow"].shape == (2, num_frames, 32, 32) and item["clips"]["flow"].dtype == torch.float32
    options = plan.views[1].flow
    cache = dataset.flow_cache(options)
    assert cache.computed == 1 and cache.dir == motion_root / CACHE_DIRNAME  # next to the dataset
    assert dataset.flow_cache(options) is cache  # one cache per setting
    record = dataset.records[0]
    cached = cache.get(dataset.manifest.resolve(record))
    assert cache.computed == 1 and cached.num_frames == record.info.num_frames
    rng = np.random.default_rng((dataset.seed, 0, 0, 0))  # the dataset's own draw for item 0
    selection = plan.sample(record, rng)
    assert selection.looped == looped
    frames = selection.start_frame + selection.views["flow"].frame_indices
    np.testing.assert_array_equal(frames, (frames[0] + stride * np.arange(num_frames)) % 50)
    expected = flow_view(cached.frames(frames), (32, 32), 2.0)
    assert np.abs(expected).max() > 0.1  # the demo moves: not a comparison of zeros
    np.testing.assert_allclose(item["clips"]["flow"].numpy(), expected, rtol=1e-6)
    dataset[1]
    assert cache.computed == 2  # the other video; item 0 again reads its cache
    dataset[0]
    assert cache.computed == 2


def test_a_flow_only_plan_decodes_no_frames(motion_root):
    dataset = VideoDataset(build_manifest(motion_root), flow_plan(with_video=False))
    calls = []
    dataset.decoder.decode = lambda *a, **k: calls.append(a)  # never called
    item = dataset[0]
    assert calls == [] and set(item["clips"]) == {"flow"} and item["clips"]["flow"].shape == (2, 20, 32, 32)


def test_flow_view_errors(motion_root):
    manifest = build_manifest(motion_root)
    dataset = VideoDataset(manifest, flow_plan(options=FlowOptions(method="raft")))
    with pytest.raises(ConfigError, match=re.escape("unknown optical flow method 'raft'; choose one of ['dis', 'farneback']")):
        dataset[0]
    # a flow the cache cannot compute makes the video unreadable: skipped like a corrupt file
    dataset = VideoDataset(manifest, flow_plan(), max_retries=0)

    class Broken:
        def get(self, path):
            raise OSError("disk full")

    dataset.flow_cache = lambda options: Broken()
    with pytest.raises(DataError, match=re.escape("1 unreadable videos in a row")):
        dataset[0]
    (path, reason), = dataset.failures().items()
    assert path == manifest.resolve(dataset.records[0]) and reason == "optical flow failed: disk full"
