"""Geometry of the clip plans: view kinds, spans, per-view indices, alignment, looping, shot windows."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidssl.data.sampling import (
    FlowOptions,
    RandomClipPlan,
    ShotWindowPlan,
    UniformClipsPlan,
    VideoShape,
    ViewSpec,
    ViewsPlan,
)
from vidssl.errors import DataError

FPS = 25.0


def shape(num_frames: int, fps: float = FPS, **kwargs) -> VideoShape:
    return VideoShape(num_frames=num_frames, fps=fps, **kwargs)


def absolute(selection, name):
    """Source-frame indices of a view (undoing the span offset; modulo length when looped)."""
    return selection.views[name].frame_indices + selection.start_frame


def video(name, num_frames, **kwargs) -> ViewSpec:
    return ViewSpec(name, num_frames=num_frames, **kwargs)


def audio(name, seconds, **kwargs) -> ViewSpec:
    return ViewSpec(name, kind="audio", seconds=seconds, **kwargs)


# --------------------------------------------------------------------------------------------
# ViewSpec
# --------------------------------------------------------------------------------------------


def test_viewspec_validation():
    with pytest.raises(ValueError, match=re.escape("view 'v': num_frames must be >= 1, got 0")):
        video("v", 0)
    with pytest.raises(ValueError, match=re.escape("view 'v': stride must be >= 1, got 0")):
        video("v", 4, stride=0)
    with pytest.raises(ValueError, match=re.escape("view 'v': fps must be > 0, got -1")):
        video("v", 4, fps=-1)
    with pytest.raises(ValueError, match=re.escape("view 'a': an audio view needs seconds > 0, got -1")):
        audio("a", -1)
    with pytest.raises(ValueError, match=re.escape("view 'a': sample_rate must be > 0, got 0")):
        audio("a", 1.0, sample_rate=0)
    with pytest.raises(ValueError, match=re.escape("view 'v': offset_frames must be >= 0 (put the earliest view first)")):
        video("v", 4, offset_frames=-1)
    assert video("v", 16, stride=2).extent(FPS) == 31
    assert audio("a", 2.0).extent(FPS) == 50  # ceil(seconds · fps)
    assert audio("a", 0.33).extent(FPS) == 9  # 8.25 frames -> 9
    assert audio("a", 0.32).extent(FPS) == 8  # exactly 8 frames: no extra frame from rounding
    np.testing.assert_array_equal(video("v", 4, fps=12.5).relative_indices(FPS), [0, 2, 4, 6])
    np.testing.assert_array_equal(video("v", 3, fps=10.0).relative_indices(FPS), [0, 2, 5])  # 2.5 -> 2 (even)
    np.testing.assert_array_equal(audio("a", 1.0).relative_indices(FPS), [0])
    assert video("v", 4, canvas=[32.0, 48.0]).canvas == (32, 48)


def test_viewspec_kinds_and_their_errors():
    assert video("v", 8).kind == "video" and video("v", 8).decodes_frames
    assert ViewSpec("i", kind="image").decodes_frames and ViewSpec("i", kind="image").num_frames == 1
    assert not audio("a", 1.0).decodes_frames
    flow = ViewSpec("f", kind="flow", num_frames=8)
    assert not flow.decodes_frames and flow.flow == FlowOptions()  # default flow settings
    assert ViewSpec("f", kind="flow", flow=FlowOptions(method="farneback")).flow.method == "farneback"
    assert video("v", 8).flow is None
    with pytest.raises(ValueError, match=re.escape(
            "view 'd': kind must be one of ['video', 'audio', 'flow', 'image'], got 'depth'")):
        ViewSpec("d", kind="depth")
    with pytest.raises(ValueError, match=re.escape("view 'a': an audio view needs seconds > 0, got 0.0")):
        ViewSpec("a", kind="audio")
    with pytest.raises(ValueError, match=re.escape("view 'i': an image view has one frame, got num_frames=2")):
        ViewSpec("i", kind="image", num_frames=2)
    with pytest.raises(ValueError, match=re.escape("view 'b' is aligned to unknown view 'c'")):
        ViewsPlan([video("a", 4), video("b", 4, align_to="c")])
    with pytest.raises(ValueError, match=re.escape("view 'c' is aligned to 'b', which is aligned itself")):
        ViewsPlan([video("a", 4), video("b", 4, align_to="a"), video("c", 4, align_to="b")])
    with pytest.raises(ValueError, match=re.escape("view names must be unique, got ['a', 'a']")):
        ViewsPlan([video("a", 4), video("a", 8)])
    with pytest.raises(ValueError, match=re.escape("a plan needs at least one view")):
        ViewsPlan([])
    assert ViewsPlan([video("v", 4), audio("v_audio", 1.0, align_to="v")]).kinds() == {"video", "audio"}


def test_plans_need_a_probed_record():
    class Unprobed:
        path, info = "train/x.mp4", None

    with pytest.raises(DataError, match=re.escape("train/x.mp4 was not probed: no frame count or frame rate")):
        RandomClipPlan(video("v", 4)).sample(Unprobed(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape("video has no frames (num_frames=0)")):
        RandomClipPlan(video("v", 4)).sample(shape(0), np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape("video has no frame rate (fps=0.0)")):
        RandomClipPlan(video("v", 4)).sample(shape(10, fps=0.0), np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# One clip, aligned views, anchors
# --------------------------------------------------------------------------------------------


def test_random_clip_plan_is_one_strided_clip_inside_the_video():
    plan = RandomClipPlan(video("clip", 16, stride=2))
    starts = set()
    for seed in range(20):
        sel = plan.sample(shape(100), np.random.default_rng(seed))
        idx = absolute(sel, "clip")
        expected_start = int(np.random.default_rng(seed).integers(0, 100 - 31 + 1))  # the plan's one draw
        np.testing.assert_array_equal(idx, expected_start + 2 * np.arange(16))
        assert not sel.looped and sel.start_frame == expected_start
        assert sel.views["clip"].frame_indices[0] == 0 and sel.num_frames == 31  # span = the clip
        starts.add(int(idx[0]))
    assert len(starts) > 5
    a = plan.sample(shape(100), np.random.default_rng(3))
    b = plan.sample(shape(100), np.random.default_rng(3))
    assert a.start_frame == b.start_frame
    center = RandomClipPlan(video("clip", 16, stride=2), center=True).sample(shape(100), None)
    assert center.start_frame == (100 - 31) // 2
    # without a generator the middle clip too
    assert RandomClipPlan(video("clip", 16, stride=2)).sample(shape(100), None).start_frame == 34


def test_brave_narrow_inside_broad_at_the_same_start():
    narrow = video("narrow", 16, stride=2, canvas=(224, 224))
    broad = video("broad", 64, stride=4, canvas=(112, 112), align_to="narrow")
    broad_audio = audio("broad_audio", 64 * 4 / FPS, align_to="narrow")
    plan = ViewsPlan([narrow, broad, broad_audio])
    for seed in range(10):
        sel = plan.sample(shape(400), np.random.default_rng(seed))
        n, b = absolute(sel, "narrow"), absolute(sel, "broad")
        # the group (256 frames: 10.24 s of audio outlasts the 253 frames of the broad view) fits
        expected_start = int(np.random.default_rng(seed).integers(0, 400 - 256 + 1))
        assert n[0] == b[0] == sel.start_frame == expected_start  # left-aligned
        np.testing.assert_array_equal(n, expected_start + 2 * np.arange(16))
        np.testing.assert_array_equal(b, expected_start + 4 * np.arange(64))
        assert sel.num_frames == broad_audio.extent(FPS) == 256
        assert float(sel.views["broad_audio"].audio_starts) == 0.0  # starts at the span start
        assert sel.views["broad_audio"].audio_starts.shape == ()
        assert not sel.looped


def test_two_anchors_draw_independent_starts_and_aligned_views_follow_theirs():
    views = [video("clip_1", 8, stride=2), audio("clip_1_audio", 0.5, align_to="clip_1"),
             video("clip_2", 8, stride=2), audio("clip_2_audio", 0.5, align_to="clip_2", offset_frames=3)]
    plan = ViewsPlan(views)
    pairs = set()
    for seed in range(30):
        sel = plan.sample(shape(300), np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # one draw per anchor, in the order of the views
        first, second = int(rng.integers(0, 300 - 15 + 1)), int(rng.integers(0, 300 - 16 + 1))
        s1, s2 = int(absolute(sel, "clip_1")[0]), int(absolute(sel, "clip_2")[0])
        assert (s1, s2) == (first, second)
        assert sel.start_frame == min(s1, s2) and sel.end_frame == max(s1 + 15, s2 + 16)
        assert sel.views["clip_1_audio"].audio_starts == pytest.approx((s1 - sel.start_frame) / FPS)
        assert sel.views["clip_2_audio"].audio_starts == pytest.approx((s2 + 3 - sel.start_frame) / FPS)
        pairs.add((s1, s2))
    assert sum(a != b for a, b in pairs) >= 28  # not a shared start
    assert len({a for a, _ in pairs}) > 20 and len({b for _, b in pairs}) > 20
    # with center=True every anchor takes the middle
    sel = ViewsPlan(views, center=True).sample(shape(300), np.random.default_rng(0))
    assert int(absolute(sel, "clip_1")[0]) == (300 - 15) // 2 and int(absolute(sel, "clip_2")[0]) == (300 - 16) // 2


def test_short_video_loops_the_long_view_but_not_the_short_one():
    narrow = video("narrow", 16, stride=2)
    broad = video("broad", 64, stride=4, align_to="narrow")
    broad_audio = audio("broad_audio", 10.24, align_to="narrow")
    sel = ViewsPlan([narrow, broad, broad_audio]).sample(shape(100), np.random.default_rng(0))
    assert sel.looped and (sel.start_frame, sel.end_frame) == (0, 100)
    start = sel.views["narrow"].frame_indices[0]
    assert start == int(np.random.default_rng(0).integers(0, 100 - 31 + 1))  # the narrow view fits without wrapping
    np.testing.assert_array_equal(sel.views["narrow"].frame_indices, start + 2 * np.arange(16))
    np.testing.assert_array_equal(sel.views["broad"].frame_indices, (start + 4 * np.arange(64)) % 100)
    assert sel.views["broad_audio"].audio_starts == pytest.approx(start / FPS)
    tiny = RandomClipPlan(video("clip", 8, stride=2)).sample(shape(5), np.random.default_rng(0))
    assert tiny.looped and (tiny.start_frame, tiny.end_frame) == (0, 5)
    np.testing.assert_array_equal(tiny.views["clip"].frame_indices, (2 * np.arange(8)) % 5)


def test_looped_audio_start_wraps_with_the_video():
    # an aligned audio view offset past the end of a looped video starts where the wrap puts it
    views = [video("v", 8), audio("a", 2.0, align_to="v", offset_frames=40)]
    sel = ViewsPlan(views).sample(shape(30), np.random.default_rng(0))
    start = int(np.random.default_rng(0).integers(0, 30 - 8 + 1))  # the shortest member (v) fits
    assert sel.looped and sel.views["v"].frame_indices[0] == start
    assert sel.views["a"].audio_starts == pytest.approx(((start + 40) % 30) / FPS)


def test_gdt_shifted_and_reversed_views():
    views = [video("v", 8), audio("v_audio", 0.32, align_to="v"),
             video("v_shift", 8, offset_frames=20, align_to="v"), audio("v_shift_audio", 0.32, offset_frames=20, align_to="v"),
             video("v_rev", 8, reverse=True, align_to="v")]
    sel = ViewsPlan(views).sample(shape(200), np.random.default_rng(1))
    v, shifted, rev = (absolute(sel, k) for k in ("v", "v_shift", "v_rev"))
    np.testing.assert_array_equal(v, v[0] + np.arange(8))
    assert v[0] == int(np.random.default_rng(1).integers(0, 200 - 28 + 1))  # the group is 28 frames
    np.testing.assert_array_equal(shifted, v + 20)
    np.testing.assert_array_equal(rev, v[::-1])
    assert sel.views["v_shift_audio"].audio_starts - sel.views["v_audio"].audio_starts == pytest.approx(20 / FPS)
    assert sel.views["v_audio"].audio_starts == pytest.approx((v[0] - sel.start_frame) / FPS)


# --------------------------------------------------------------------------------------------
# Uniform clips
# --------------------------------------------------------------------------------------------


def test_uniform_clips_cover_the_video_evenly():
    plan = UniformClipsPlan(video("clip", 10), num_clips=3)
    sel = plan.sample(shape(100), None)
    idx = absolute(sel, "clip")
    assert idx.shape == (3, 10) and plan.clips_per_view == 3 and plan.views == [plan.view]
    np.testing.assert_array_equal(idx[:, 0], [0, 45, 90])
    np.testing.assert_array_equal(idx - idx[:, :1], np.tile(np.arange(10), (3, 1)))
    np.testing.assert_allclose(sel.views["clip"].audio_starts, [0.0, 45 / FPS, 90 / FPS])
    one = UniformClipsPlan(video("clip", 10), num_clips=1).sample(shape(100), None)
    assert absolute(one, "clip")[0, 0] == 45
    audio_clips = UniformClipsPlan(audio("a", 1.0), num_clips=2).sample(shape(100), None)
    np.testing.assert_allclose(audio_clips.views["a"].audio_starts, [0.0, 75 / FPS])  # extent 25 frames
    with pytest.raises(ValueError, match=re.escape("num_clips must be >= 1, got 0")):
        UniformClipsPlan(video("clip", 10), num_clips=0)


def test_rho_clips_from_one_decode():
    views = [video(f"clip_{k}", 8, stride=4) for k in (1, 2, 3)]
    views += [audio(f"clip_{k}_audio", 1.0, align_to=f"clip_{k}") for k in (1, 2, 3)]
    plan = ViewsPlan(views)
    sel = plan.sample(shape(250), np.random.default_rng(0))
    idx = np.stack([absolute(sel, f"clip_{k}") for k in (1, 2, 3)])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(idx[:, 0], [int(rng.integers(0, 250 - 29 + 1)) for _ in range(3)])
    assert idx.shape == (3, 8) and sel.views["clip_1_audio"].audio_starts.shape == ()
    assert sel.start_frame == idx.min() and sel.end_frame == idx[:, 0].max() + 29
    np.testing.assert_array_equal(np.diff(idx, axis=1), 4)
    audio_starts = [float(sel.views[f"clip_{k}_audio"].audio_starts) for k in (1, 2, 3)]
    np.testing.assert_allclose(audio_starts, (idx[:, 0] - sel.start_frame) / FPS)
    assert len({tuple(r) for r in idx}) == 3  # independent starts
    short = plan.sample(shape(20), np.random.default_rng(0))
    assert short.looped and (short.start_frame, short.end_frame) == (0, 20)
    for k in (1, 2, 3):  # nothing fits in 20 frames: every clip starts at 0 and wraps
        np.testing.assert_array_equal(short.views[f"clip_{k}"].frame_indices, (4 * np.arange(8)) % 20)


# --------------------------------------------------------------------------------------------
# Image views and shot windows
# --------------------------------------------------------------------------------------------


def test_image_view_selects_one_frame():
    plan = ViewsPlan([video("clip", 8, stride=2), ViewSpec("key", kind="image", align_to="clip", offset_frames=7)])
    sel = plan.sample(shape(100), np.random.default_rng(4))
    assert sel.views["key"].frame_indices.shape == ()
    assert int(absolute(sel, "key")) == int(absolute(sel, "clip")[0]) + 7
    uniform = UniformClipsPlan(ViewSpec("key", kind="image"), num_clips=5).sample(shape(101), None)
    np.testing.assert_array_equal(absolute(uniform, "key"), [0, 25, 50, 75, 100])


SHOTS = [[0, 10], [10, 20], [20, 30], [30, 45], [45, 60]]
SHOT_LABELS = [0, 1, 0, 0, 1]


def test_shot_window_plan_one_item_per_shot():
    record = shape(60, annotations={"shots": SHOTS, "shot_labels": SHOT_LABELS}, path="movies/m.mp4")
    plan = ShotWindowPlan(ViewSpec("shot", kind="image"), shots_per_side=2)
    assert plan.item_keys(record) == [0, 1, 2, 3, 4] and plan.clips_per_view == 5 and plan.views == [plan.view]
    expected_index = {0: [0, 0, 0, 1, 2], 1: [0, 0, 1, 2, 3], 2: [0, 1, 2, 3, 4], 3: [1, 2, 3, 4, 4], 4: [2, 3, 4, 4, 4]}
    expected_valid = {0: [0, 0, 1, 1, 1], 1: [0, 1, 1, 1, 1], 2: [1, 1, 1, 1, 1], 3: [1, 1, 1, 1, 0], 4: [1, 1, 1, 0, 0]}
    for key in plan.item_keys(record):
        sel = plan.sample(record, np.random.default_rng(key), key)
        frames = absolute(sel, "shot")
        assert frames.shape == (5,) and not sel.looped
        assert sel.start_frame == frames.min() and sel.end_frame == frames.max() + 1
        np.testing.assert_array_equal(sel.extras["shot_index"], expected_index[key])
        np.testing.assert_array_equal(sel.extras["shot_valid"], np.array(expected_valid[key], dtype=bool))
        np.testing.assert_array_equal(sel.extras["shot_labels"], [SHOT_LABELS[i] for i in expected_index[key]])
        assert sel.extras["shot_labels"].dtype == np.int64 and sel.extras["shot_index"].dtype == np.int64
        for frame, shot in zip(frames, expected_index[key]):
            assert SHOTS[shot][0] <= frame < SHOTS[shot][1]  # each frame inside its shot
    # random frames vary per draw; the centre variant takes each shot's middle frame
    draws = {tuple(absolute(plan.sample(record, np.random.default_rng(s), 2), "shot")) for s in range(10)}
    assert len(draws) > 1
    center = ShotWindowPlan(ViewSpec("shot", kind="image"), shots_per_side=2, center=True)
    np.testing.assert_array_equal(absolute(center.sample(record, np.random.default_rng(0), 2), "shot"),
                                  [4, 14, 24, 37, 52])
    # without labels: -1 everywhere; key None is the first shot
    unlabelled = shape(60, annotations={"shots": SHOTS})
    sel = ShotWindowPlan(ViewSpec("shot", kind="image"), shots_per_side=1).sample(unlabelled, None)
    np.testing.assert_array_equal(sel.extras["shot_labels"], [-1, -1, -1])
    np.testing.assert_array_equal(sel.extras["shot_index"], [0, 0, 1])
    np.testing.assert_array_equal(absolute(sel, "shot"), [4, 4, 14])  # no generator: middle frames


def test_shot_window_plan_errors():
    plan = ShotWindowPlan(ViewSpec("shot", kind="image"), shots_per_side=1)
    for annotations in ({}, {"shots": []}):
        record = shape(60, annotations=annotations, path="movies/plain.mp4")
        with pytest.raises(DataError, match=re.escape("movies/plain.mp4 has no shot annotations (annotations['shots'])")):
            plan.item_keys(record)
        with pytest.raises(DataError, match=re.escape("movies/plain.mp4 has no shot annotations")):
            plan.sample(record, np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match=re.escape(
            "a shot window takes one still frame per shot: view 'clip' must be kind 'image', got 'video'")):
        ShotWindowPlan(video("clip", 4))
    with pytest.raises(ValueError, match=re.escape("shots_per_side must be >= 0, got -1")):
        ShotWindowPlan(ViewSpec("shot", kind="image"), shots_per_side=-1)


# --------------------------------------------------------------------------------------------
# Every plan: indices inside the decoded span
# --------------------------------------------------------------------------------------------


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
    a = video("a", frames, stride=stride)
    b = video("b", frames + extra, stride=1, offset_frames=extra, align_to="a")
    b_audio = audio("b_audio", 0.5, offset_frames=extra, align_to="a")
    plans = (ViewsPlan([a, b, b_audio]), ViewsPlan([a, replace(a, name="a2")]), UniformClipsPlan(a, 4),
             RandomClipPlan(replace(b, align_to=None)), RandomClipPlan(audio("alone", 0.5)),
             ViewsPlan([a, ViewSpec("key", kind="image", align_to="a", offset_frames=extra)]))
    for plan in plans:
        sel = plan.sample(shape(num_frames, fps), np.random.default_rng(seed))
        assert 0 <= sel.start_frame < sel.end_frame <= num_frames
        for view in sel.views.values():
            assert view.frame_indices.min() >= 0 and view.frame_indices.max() < sel.num_frames
            if view.spec.kind in ("video", "flow"):
                assert view.frame_indices.shape[-1] == view.spec.num_frames
            starts = np.atleast_1d(view.audio_starts)
            assert np.all(starts >= 0)
            if not sel.looped:  # the view's whole extent lies in the decoded span
                assert np.all(np.round(starts * fps).astype(int) + view.spec.extent(fps) <= sel.num_frames)
