"""Optical flow for BraVe's broad flow view: OpenCV flow, int8 cache, view fitting."""

from __future__ import annotations

import numpy as np
import pytest

from vidssl.data.flow import (
    CACHE_DIRNAME,
    FlowCache,
    compute_flow,
    dequantize_flow,
    flow_view,
    quantize_flow,
)
from vidssl.errors import ConfigError


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


def test_flow_dataset_rejects_views_it_does_not_have(demo_manifest, tmp_path):
    from vidssl.data.flow import FlowVideoDataset
    from vidssl.data.sampling import AlignedViewsPlan, ViewSpec

    plan = AlignedViewsPlan([ViewSpec("narrow", 4, stride=2, canvas=(32, 32)), ViewSpec("broad", 8, stride=4)])
    cache = FlowCache(tmp_path, short_side=32)
    with pytest.raises(ConfigError, match=r"flow views \['brod'\] are not views of the plan"):
        FlowVideoDataset(demo_manifest, plan, flow_views=["brod"], flow_cache=cache)
    with pytest.raises(ConfigError, match="at least one RGB view"):
        FlowVideoDataset(demo_manifest, plan, flow_views=["narrow", "broad"], flow_cache=cache)


def test_flow_dataset_slices_the_cached_flow_at_the_view_frames(demo_manifest, tmp_path):
    """The flow view holds the cached flow at exactly the broad view's source frames (looped)."""
    from vidssl.data.flow import FlowVideoDataset
    from vidssl.data.sampling import AlignedViewsPlan, ViewSpec

    plan = AlignedViewsPlan([ViewSpec("narrow", 4, stride=2, canvas=(32, 32)),
                             ViewSpec("flow", 20, stride=4, canvas=(32, 32))])  # 77 frames > 50: loops
    cache = FlowCache(tmp_path, short_side=32)
    dataset = FlowVideoDataset(demo_manifest, plan, flow_views=["flow"], flow_cache=cache, max_pixels=1e6)
    item = dataset[0]
    assert set(item["video"]) == {"narrow"} and item["flow"]["flow"].shape == (2, 20, 32, 32)
    record = dataset.records[0]
    cached = cache.get(dataset.manifest.resolve(record))
    rng = np.random.default_rng((dataset.seed, 0, 0, 0))  # the dataset's own draw for item 0
    selection = plan.sample(record.info.num_frames, record.info.fps, rng)
    expected = flow_view(cached.frames(selection.start_frame + selection.views["flow"].frame_indices), 32, 1e6)
    np.testing.assert_allclose(item["flow"]["flow"].numpy(), expected, rtol=1e-6)
