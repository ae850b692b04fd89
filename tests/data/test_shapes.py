"""The second embedded dataset ("shapes"): its layout, files, determinism, and that each motion class does
what its name says while one frame does not tell it; plus how the CLI, the demo and presets reach it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vidssl.data import demo
from vidssl.data.demo import shapes
from vidssl.errors import DataError, UserError

TINY = shapes.SHAPES_SIZES["tiny"]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return demo.generate_shapes_demo(tmp_path_factory.mktemp("shapes") / "data", size="tiny", seed=0, workers=1)


def _path(name: str, seed: int = 0, frames: int = 90, width: int = 96) -> shapes.ShapePath:
    return shapes.SHAPE_MOTIONS[name](np.random.default_rng(seed), frames, width)


# --------------------------------------------------------------------------------------
# the files


def test_layout_splits_captions_and_marker(shapes_root):
    class_lines = (shapes_root / "ucfTrainTestlist" / "classInd.txt").read_text().splitlines()
    assert class_lines == [f"{i + 1} {name}" for i, name in enumerate(shapes.SHAPE_CLASS_NAMES)]
    videos = sorted(p.relative_to(shapes_root).as_posix() for p in shapes_root.glob("*/*.mp4"))
    assert len(videos) == len(shapes.SHAPE_CLASS_NAMES) * TINY.num_groups * TINY.clips_per_group
    train = [line.split()[0] for line in (shapes_root / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()]
    test = (shapes_root / "ucfTrainTestlist" / "testlist01.txt").read_text().split()
    assert sorted(train + test) == videos and not set(train) & set(test)
    assert {int(p.rsplit("_g", 1)[1][:2]) for p in test} == set(demo.held_out_groups(TINY.num_groups, 1))
    captions = json.loads((shapes_root / "captions.json").read_text())
    assert sorted(captions) == videos
    assert captions["Hop/v_Hop_g01_c01.mp4"].endswith("hops sideways")
    assert any(shape in captions["Hop/v_Hop_g01_c01.mp4"] for shape in shapes.SHAPE_NAMES)
    marker = json.loads((shapes_root / demo.MARKER_NAME).read_text())
    assert marker["kind"] == "ucf101-shapes" and marker["complete"]
    assert "Pendulum" in (shapes_root / "README.txt").read_text()


def test_files_are_30_fps_with_audio_and_a_keyframe_a_second(shapes_root):
    for path in sorted(shapes_root.glob("*/*.mp4"))[::5]:
        with av.open(str(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.average_rate == 30 and audio.sample_rate == TINY.audio_rate
            frames = list(container.decode(video=0))
        assert len(frames) == 60 and (frames[0].height, frames[0].width) == (TINY.resolution,) * 2
        assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 30]
        with av.open(str(path)) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
        assert 2.0 * TINY.audio_rate <= samples <= 2.1 * TINY.audio_rate


def test_the_manifest_reads_it_like_any_ucf101_tree(shapes_root):
    from vidssl.data.index import build_manifest

    manifest = build_manifest(shapes_root, workers=1, write=False)
    assert manifest.class_names == list(shapes.SHAPE_CLASS_NAMES)
    assert {round(record.info.fps) for record in manifest.records} == {30}
    assert all(record.annotations.get("captions") for record in manifest.records)


def test_second_call_skips_and_other_data_is_never_deleted(shapes_root, tmp_path):
    mtime = (shapes_root / "Hop" / "v_Hop_g01_c01.mp4").stat().st_mtime_ns
    demo.generate_shapes_demo(shapes_root, size="tiny", seed=0, workers=1)
    assert (shapes_root / "Hop" / "v_Hop_g01_c01.mp4").stat().st_mtime_ns == mtime
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep")
    with pytest.raises(DataError, match="was not written by `vidssl data demo`"):
        demo.generate_shapes_demo(foreign, size="tiny")
    with pytest.raises(UserError, match="unknown demo size 'huge'; choose one of tiny, default"):
        demo.generate_shapes_demo(tmp_path / "x", size="huge")
    with pytest.raises(DataError, match="unknown embedded dataset 'cats'; choose one of clips, shapes, movies"):
        demo.generate_embedded("cats", tmp_path / "y")


def test_clips_are_deterministic_under_a_seed_and_differ_across_seeds():
    task = shapes.ShapesClip("/unused", 3, 2, 1, 7, TINY)
    frames, audio, info = shapes.render_shapes_clip(task)
    again, audio_again, _ = shapes.render_shapes_clip(task)
    assert np.array_equal(frames, again) and np.array_equal(audio, audio_again)
    other, _, _ = shapes.render_shapes_clip(shapes.ShapesClip("/unused", 3, 2, 1, 8, TINY))
    assert not np.array_equal(frames, other)
    assert frames.shape == (60, 48, 48, 3) and frames.dtype == np.uint8
    assert audio.shape == (2 * TINY.audio_rate,) and np.abs(audio).max() > 0.05


def test_default_size_differs_from_the_digits_dataset():
    digits, other = demo.DEMO_SIZES["default"], shapes.SHAPES_SIZES["default"]
    assert other.resolution != digits.resolution and shapes.SHAPES_FPS != demo.FPS
    assert other.audio_rate != digits.audio_rate
    assert not set(shapes.SHAPE_CLASS_NAMES) & set(demo.CLASS_NAMES)
    assert len(shapes.SHAPE_CLASS_NAMES) * other.num_groups * other.clips_per_group == 800


# --------------------------------------------------------------------------------------
# motions


def _turning(path: shapes.ShapePath) -> np.ndarray:
    """Signed area swept per frame around the path's mean point (> 0: clockwise on screen, y down)."""
    offsets = path.centre - path.centre.mean(0)
    return offsets[:-1, 0] * offsets[1:, 1] - offsets[:-1, 1] * offsets[1:, 0]


@pytest.mark.parametrize("seed", range(5))
def test_each_motion_does_what_its_name_says(seed):
    width = 96
    assert (_turning(_path("OrbitClockwise", seed)) > 0).all()
    assert (_turning(_path("OrbitCounterclockwise", seed)) < 0).all()
    pulse = _path("Pulse", seed)
    assert pulse.size.max() / pulse.size.min() > 1.5 and np.ptp(pulse.centre, axis=0).max() == 0 and (pulse.aspect == 1).all()
    squash = _path("Squash", seed)
    assert squash.aspect.max() > 1.3 and squash.aspect.min() < 1 / 1.3 and np.ptp(squash.size) == 0
    shake = _path("Shake", seed)
    steps = np.linalg.norm(np.diff(shake.centre, axis=0), axis=1)
    assert steps.mean() > 0.04 * width and np.linalg.norm(shake.centre - shake.centre.mean(0), axis=1).max() < 0.3 * width
    pendulum = _path("Pendulum", seed)
    assert np.ptp(pendulum.centre[:, 0]) > 0.3 * width  # swings sideways
    billiard = _path("Billiard", seed)
    size = billiard.size[0]
    assert (billiard.centre >= size / 2 - 1e-6).all() and (billiard.centre <= width - size / 2 + 1e-6).all()
    assert len(billiard.events) >= 2
    velocity = np.diff(billiard.centre, axis=0)
    flips = np.nonzero((np.sign(velocity[1:]) != np.sign(velocity[:-1])).any(1))[0] + 1
    assert set(flips) <= set(billiard.events) | set(billiard.events + 1) | set(billiard.events - 1)
    hop = _path("Hop", seed)
    moved = np.nonzero(np.abs(np.diff(hop.centre[:, 0])) > 0)[0] + 1
    assert hop.wrap and np.array_equal(moved, hop.events) and len(hop.events) >= 5


def test_one_frame_does_not_tell_the_orbit_direction():
    """Clockwise and counter-clockwise orbits draw the same positions; only their order differs."""
    first = np.stack([_path("OrbitClockwise", s, frames=1).centre[0] for s in range(400)])
    second = np.stack([_path("OrbitCounterclockwise", s, frames=1).centre[0] for s in range(400)])
    assert np.allclose(first.mean(0), second.mean(0), atol=2.0)
    assert np.allclose(first.std(0), second.std(0), atol=2.0)


def test_ring_has_a_hole_and_masks_are_anti_aliased():
    ring, _ = shapes._shape_masks("ring", (24, 24), 30, 1.0, 0.0, 48, 48)
    disc, edge = shapes._shape_masks("circle", (24, 24), 30, 1.0, 0.0, 48, 48)
    assert ring[24, 24] == 0 and disc[24, 24] == 1 and ring[24, 24 + 11] == 1
    assert ((disc > 0) & (disc < 1)).any() and edge.max() > 0.5


def _dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_audio_pitch_follows_the_height_and_clicks_mark_hops():
    rate, frames, width = 16000, 30, 96
    def still_at(y):
        return shapes.ShapePath(np.tile([[48.0, y]], (frames, 1)), np.zeros(frames), np.full(frames, 30.0),
                                np.ones(frames), np.zeros(0, np.int64))
    top = shapes.render_shape_audio(np.random.default_rng(0), still_at(0.0), "circle", width, rate)
    bottom = shapes.render_shape_audio(np.random.default_rng(0), still_at(96.0), "circle", width, rate)
    assert abs(_dominant_hz(top, rate) - 800) < 10 and abs(_dominant_hz(bottom, rate) - 200) < 10
    hop = _path("Hop", 0, frames=60)
    wave = shapes.render_shape_audio(np.random.default_rng(0), hop, "circle", width, rate)
    event = int(hop.events[0] / shapes.SHAPES_FPS * rate)
    quiet = slice(event - 2000, event - 500)
    assert np.abs(wave[event : event + 200]).max() > 3 * np.abs(wave[quiet]).max()


# --------------------------------------------------------------------------------------
# how users reach it


def test_cli_writes_it_and_refuses_movie_with_shapes(tmp_path):
    cmd = [sys.executable, "-m", "vidssl", "data", "demo", "--dataset", "shapes", "--size", "tiny", "--workers", "1",
           "--out", str(tmp_path / "s")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "shapes demo dataset" in done.stdout and (tmp_path / "s" / "Squash").is_dir()
    refused = subprocess.run([*cmd[:-1], str(tmp_path / "m"), "--movie"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--movie and --dataset shapes do not go together" in refused.stderr
    assert not (tmp_path / "m").exists()


def test_a_preset_generates_it_with_demo_variant_shapes(tmp_path):
    from vidssl.data.module import prepare_data_root
    from vidssl.methods.train import load_pretrain_config

    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", [f"data.root={tmp_path / 'gen'}", "data.demo_variant=shapes",
                                                            "data.demo_size=tiny"])
    root = prepare_data_root(cfg.data, log=lambda message: None)
    assert json.loads((root / demo.MARKER_NAME).read_text())["kind"] == "ucf101-shapes"


def test_the_demo_pretrains_on_the_dataset_it_names(tmp_path):
    from vidssl.eval.demo import DEMO_SETTINGS, pretrain_config

    cfg = pretrain_config(DEMO_SETTINGS["quick"], tmp_path, "cpu", 0, False, 0, "shapes")
    assert cfg.data.demo_variant == "shapes"
