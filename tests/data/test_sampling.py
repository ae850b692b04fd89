"""Geometry of the clip plans: spans, per-view indices, alignment, looping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidssl.data.sampling import (
    AlignedViewsPlan,
    MultiClipPlan,
    MultiViewPlan,
    RandomClipPlan,
    UniformClipsPlan,
    ViewSpec,
)

FPS = 25.0


def absolute(selection, name):
    """Source-frame indices of a view (undoing the span offset; modulo length when looped)."""
    return selection.views[name].frame_indices + selection.start_frame


def test_viewspec_validation():
    with pytest.raises(ValueError, match="num_frames"):
        ViewSpec("v", 0)
    with pytest.raises(ValueError, match="stride"):
        ViewSpec("v", 4, stride=0)
    with pytest.raises(ValueError, match="fps"):
        ViewSpec("v", 4, fps=-1)
    with pytest.raises(ValueError, match="audio_seconds"):
        ViewSpec("v", 4, audio_seconds=-1)
    assert ViewSpec("v", 16, stride=2).extent(FPS) == 31
    assert ViewSpec("v", 8, audio_seconds=2.0).extent(FPS) == 50  # audio longer than the frames
    np.testing.assert_array_equal(ViewSpec("v", 4, fps=12.5).relative_indices(FPS), [0, 2, 4, 6])


def test_random_clip_plan_is_one_strided_clip_inside_the_video():
    plan = RandomClipPlan(ViewSpec("clip", 16, stride=2))
    starts = set()
    for seed in range(20):
        sel = plan.sample(100, FPS, np.random.default_rng(seed))
        idx = absolute(sel, "clip")
        assert idx.shape == (16,) and not sel.looped
        np.testing.assert_array_equal(np.diff(idx), 2)
        assert 0 <= idx[0] and idx[-1] < 100
        assert sel.views["clip"].frame_indices[0] == 0 and sel.num_frames == 31  # span = the clip
        starts.add(int(idx[0]))
    assert len(starts) > 5
    a = plan.sample(100, FPS, np.random.default_rng(3))
    b = plan.sample(100, FPS, np.random.default_rng(3))
    assert a.start_frame == b.start_frame
    center = RandomClipPlan(ViewSpec("clip", 16, stride=2), center=True).sample(100, FPS, None)
    assert center.start_frame == (100 - 31) // 2


def test_brave_narrow_inside_broad_at_the_same_start():
    narrow = ViewSpec("narrow", 16, stride=2, canvas=(224, 224))
    broad = ViewSpec("broad", 64, stride=4, canvas=(112, 112), audio_seconds=64 * 4 / FPS)
    plan = AlignedViewsPlan([narrow, broad])
    for seed in range(10):
        sel = plan.sample(400, FPS, np.random.default_rng(seed))
        n, b = absolute(sel, "narrow"), absolute(sel, "broad")
        assert n[0] == b[0]  # left-aligned
        assert b[-1] >= n[-1] and b[-1] - b[0] == 63 * 4
        assert sel.num_frames == broad.extent(FPS) == 256  # 10.24 s of audio outlasts the 253 frames
        assert sel.views["broad"].audio_starts == pytest.approx((b[0] - sel.start_frame) / FPS)
        assert not sel.looped


def test_short_video_loops_the_long_view_but_not_the_short_one():
    narrow = ViewSpec("narrow", 16, stride=2)
    broad = ViewSpec("broad", 64, stride=4, audio_seconds=10.24)
    sel = AlignedViewsPlan([narrow, broad]).sample(100, FPS, np.random.default_rng(0))
    assert sel.looped and (sel.start_frame, sel.end_frame) == (0, 100)
    start = sel.views["narrow"].frame_indices[0]
    assert start <= 100 - 31  # the narrow view fits without wrapping
    np.testing.assert_array_equal(sel.views["narrow"].frame_indices, start + 2 * np.arange(16))
    np.testing.assert_array_equal(sel.views["broad"].frame_indices, (start + 4 * np.arange(64)) % 100)
    assert sel.views["broad"].audio_starts == pytest.approx(start / FPS)
    tiny = RandomClipPlan(ViewSpec("clip", 8, stride=2)).sample(5, FPS, np.random.default_rng(0))
    np.testing.assert_array_equal(tiny.views["clip"].frame_indices, (2 * np.arange(8)) % 5)


def test_gdt_shifted_and_reversed_views():
    views = [ViewSpec("v", 8, audio_seconds=0.32), ViewSpec("v_shift", 8, offset_frames=20, audio_seconds=0.32),
             ViewSpec("v_rev", 8, reverse=True)]
    sel = MultiViewPlan(views).sample(200, FPS, np.random.default_rng(1))
    v, shifted, rev = (absolute(sel, k) for k in ("v", "v_shift", "v_rev"))
    np.testing.assert_array_equal(shifted, v + 20)
    np.testing.assert_array_equal(rev, v[::-1])
    assert sel.views["v_shift"].audio_starts - sel.views["v"].audio_starts == pytest.approx(20 / FPS)
    with pytest.raises(ValueError, match="unique"):
        AlignedViewsPlan([ViewSpec("a", 4), ViewSpec("a", 8)])
    with pytest.raises(ValueError, match="offset_frames"):
        AlignedViewsPlan([ViewSpec("a", 4, offset_frames=-1)])


def test_uniform_clips_cover_the_video_evenly():
    plan = UniformClipsPlan(ViewSpec("clip", 10), num_clips=3)
    sel = plan.sample(100, FPS, None)
    idx = absolute(sel, "clip")
    assert idx.shape == (3, 10) and plan.clips_per_view == 3
    np.testing.assert_array_equal(idx[:, 0], [0, 45, 90])
    np.testing.assert_array_equal(idx - idx[:, :1], np.tile(np.arange(10), (3, 1)))
    one = UniformClipsPlan(ViewSpec("clip", 10), num_clips=1).sample(100, FPS, None)
    assert absolute(one, "clip")[0, 0] == 45
    with pytest.raises(ValueError):
        UniformClipsPlan(ViewSpec("clip", 10), num_clips=0)


def test_rho_clips_from_one_decode():
    plan = MultiClipPlan(ViewSpec("clip", 8, stride=4, audio_seconds=1.0), rho=3)
    sel = plan.sample(250, FPS, np.random.default_rng(0))
    idx = absolute(sel, "clip")
    assert idx.shape == (3, 8) and sel.views["clip"].audio_starts.shape == (3,)
    assert sel.start_frame == idx.min() and sel.end_frame >= idx.max() + 1
    np.testing.assert_array_equal(np.diff(idx, axis=1), 4)
    np.testing.assert_allclose(sel.views["clip"].audio_starts, (idx[:, 0] - sel.start_frame) / FPS)
    assert len({tuple(r) for r in idx}) == 3  # independent starts
    short = plan.sample(20, FPS, np.random.default_rng(0))
    assert short.looped and short.views["clip"].frame_indices.max() < 20


@settings(max_examples=60, deadline=None)
@given(
    num_frames=st.integers(1, 400),
    fps=st.sampled_from([12.0, 25.0, 29.97, 30.0]),
    frames=st.integers(1, 32),
    stride=st.integers(1, 5),
    extra=st.integers(0, 40),
    seed=st.integers(0, 1000),
)
def test_every_index_lies_in_the_decoded_span(num_frames, fps, frames, stride, extra, seed):
    views = [ViewSpec("a", frames, stride=stride), ViewSpec("b", frames + extra, stride=1, offset_frames=extra, audio_seconds=0.5)]
    for plan in (AlignedViewsPlan(views), MultiClipPlan(views[0], rho=2), UniformClipsPlan(views[0], 4), RandomClipPlan(views[1])):
        sel = plan.sample(num_frames, fps, np.random.default_rng(seed))
        assert 0 <= sel.start_frame < sel.end_frame <= num_frames
        for view in sel.views.values():
            assert view.frame_indices.min() >= 0 and view.frame_indices.max() < sel.num_frames
            assert view.frame_indices.shape[-1] == view.spec.num_frames
            assert np.all(np.atleast_1d(view.audio_starts) >= 0)
