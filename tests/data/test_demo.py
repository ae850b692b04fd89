"""The embedded dataset: real MP4 files with audio, UCF101 layout, group-disjoint splits,
determinism, motion semantics, and the movie variant in MovieNet-SSeg / BaSSL format."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidssl.data import demo
from vidssl.errors import DataError, UserError

TINY = demo.DEMO_SIZES["tiny"]


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def group_of(relpath: str) -> int:
    return int(relpath.rsplit("_g", 1)[1][:2])


# --------------------------------------------------------------------------------------
# action-recognition demo (UCF101 layout)


def test_layout_and_class_index(demo_root):
    class_lines = read_lines(demo_root / "ucfTrainTestlist" / "classInd.txt")
    assert class_lines == [f"{i + 1} {name}" for i, name in enumerate(demo.CLASS_NAMES)]
    assert len(demo.CLASS_NAMES) >= 8
    for name in demo.CLASS_NAMES:
        files = sorted(p.name for p in (demo_root / name).glob("*.mp4"))
        assert files == [f"v_{name}_g{g:02d}_c01.mp4" for g in range(1, TINY.num_groups + 1)]
    readme = (demo_root / "README.txt").read_text()
    assert all(name in readme for name in demo.CLASS_NAMES)


def test_every_file_decodes_with_audio(demo_root):
    for path in sorted(demo_root.glob("*/*.mp4")):
        with av.open(str(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name in ("h264", "mpeg4")
            assert audio.codec_context.name == "aac" and audio.sample_rate == TINY.audio_rate
            assert audio.codec_context.channels == 1
            frames = list(container.decode(video=0))
        assert len(frames) == 50  # 2 s at 25 fps
        assert (frames[0].height, frames[0].width) == (64, 64)
        assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 25]  # one keyframe a second
        with av.open(str(path)) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
        assert 2.0 * TINY.audio_rate <= samples <= 2.1 * TINY.audio_rate


def test_splits_are_consistent_and_group_disjoint(demo_root):
    lists = demo_root / "ucfTrainTestlist"
    all_files = {str(p.relative_to(demo_root)) for p in demo_root.glob("*/*.mp4")}
    class_index = {name: i + 1 for i, name in enumerate(demo.CLASS_NAMES)}
    test_sets = []
    for fold in (1, 2, 3):
        train = [line.split() for line in read_lines(lists / f"trainlist0{fold}.txt")]
        test = read_lines(lists / f"testlist0{fold}.txt")
        train_paths = {path for path, _ in train}
        assert train_paths | set(test) == all_files and not train_paths & set(test)
        for path, label in train:
            assert int(label) == class_index[path.split("/")[0]]
            assert path.split("/")[1].startswith(f"v_{path.split('/')[0]}_g")
        train_groups, test_groups = {group_of(p) for p in train_paths}, {group_of(p) for p in test}
        assert not train_groups & test_groups
        assert test_groups == set(demo.held_out_groups(TINY.num_groups, fold))
        assert {p.split("/")[0] for p in test} == set(demo.CLASS_NAMES)  # every class is tested
        test_sets.append(set(test))
    assert not (test_sets[0] & test_sets[1]) and not (test_sets[1] & test_sets[2])


def test_held_out_groups_follow_ucf101():
    assert [demo.held_out_groups(25, fold) for fold in (1, 2, 3)] == [
        list(range(1, 8)), list(range(8, 15)), list(range(15, 22))]
    assert [demo.held_out_groups(4, fold) for fold in (1, 2, 3)] == [[1], [2], [3]]
    with pytest.raises(ValueError, match="too few"):
        demo.held_out_groups(2, 1)


def test_frames_and_audio_are_deterministic_under_a_seed():
    task = demo.DemoClip("unused", 4, 2, 1, 0, TINY)
    frames_a, audio_a, info_a = demo.render_clip(task)
    frames_b, audio_b, info_b = demo.render_clip(task)
    assert np.array_equal(frames_a, frames_b) and np.array_equal(audio_a, audio_b) and info_a == info_b
    other = demo.render_clip(demo.DemoClip("unused", 4, 2, 1, 1, TINY))[0]
    assert not np.array_equal(frames_a, other)
    assert frames_a.shape == (50, 64, 64, 3) and frames_a.dtype == np.uint8
    assert audio_a.dtype == np.float32 and np.abs(audio_a).max() <= 1.0


def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(int)


def test_encoding_the_same_clip_twice_gives_the_same_video(tmp_path):
    """The rendered frames are bit-identical (above); x264 itself is not always byte-identical
    from run to run here (now and then the first encode in a process differs slightly), so the
    encoded files are compared by their decoded pictures and audio."""
    frames, audio, _ = demo.render_clip(demo.DemoClip("unused", 8, 1, 1, 0, TINY))
    demo.write_mp4(tmp_path / "a.mp4", frames, audio, TINY.audio_rate)
    demo.write_mp4(tmp_path / "b.mp4", frames, audio, TINY.audio_rate)
    first, second = decoded_frames(tmp_path / "a.mp4"), decoded_frames(tmp_path / "b.mp4")
    assert first.shape == second.shape == frames.shape
    assert np.abs(first - second).mean() < 1.0
    assert np.abs(first - frames.astype(int)).mean() < 4.0  # close to what was rendered
    with av.open(str(tmp_path / "a.mp4")) as a, av.open(str(tmp_path / "b.mp4")) as b:
        assert [bytes(p) for p in a.demux(audio=0)] == [bytes(p) for p in b.demux(audio=0)]


def test_group_background_is_shared_by_all_classes():
    """The setting belongs to the group, so it says nothing about the class."""
    first = [demo.render_clip(demo.DemoClip("unused", c, 3, 1, 0, TINY))[0] for c in (0, 5, 9)]
    corners = [f[:, :3, :3].astype(int) for f in first]  # digits rarely reach the corner in all frames
    medians = [np.median(c.reshape(-1, 3), axis=0) for c in corners]
    assert np.abs(medians[0] - medians[1]).max() <= 8 and np.abs(medians[0] - medians[2]).max() <= 8


def trajectory(name: str, seed: int = 0, frames: int = 50, width: int = 64) -> demo.Trajectory:
    return demo.MOTIONS[name](np.random.default_rng(seed), frames, width)


def test_motions_need_time_to_tell_apart():
    left, right = trajectory("MoveLeft"), trajectory("MoveRight")
    assert (np.diff(left.centre[:, 0]) < 0).all() and (np.diff(right.centre[:, 0]) > 0).all()
    assert (np.diff(trajectory("MoveUp").centre[:, 1]) < 0).all()
    # clockwise on screen = decreasing counter-clockwise angle
    assert (np.diff(trajectory("RotateClockwise").angle) < 0).all()
    assert (np.diff(trajectory("RotateCounterclockwise").angle) > 0).all()
    zoom_in = trajectory("ZoomIn")
    growth = np.diff(zoom_in.size)
    assert len(zoom_in.events) >= 1 and set(np.nonzero(growth < 0)[0] + 1) == set(zoom_in.events)
    zoom_out = trajectory("ZoomOut")
    assert set(np.nonzero(np.diff(zoom_out.size) > 0)[0] + 1) == set(zoom_out.events)
    bounce = trajectory("BounceSides")
    assert len(bounce.events) >= 1
    for hit in bounce.events:  # direction reverses at each hit
        before = bounce.centre[hit - 1, 0] - bounce.centre[hit - 2, 0] if hit >= 2 else None
        after = bounce.centre[hit + 1, 0] - bounce.centre[hit, 0] if hit + 1 < 50 else None
        if before is not None and after is not None:
            assert np.sign(before) != np.sign(after)
    floor = trajectory("BounceFloor")
    assert len(floor.events) >= 1 and floor.centre[:, 1].max() <= 64
    # one frame does not give the class: the start position of a move is uniform over the frame
    starts = np.array([trajectory("MoveLeft", seed=s, frames=2).centre[0, 0] % 64 for s in range(400)])
    assert starts.min() < 8 and starts.max() > 56
    starts_right = np.array([trajectory("MoveRight", seed=s, frames=2).centre[0, 0] % 64 for s in range(400)])
    assert abs(starts.mean() - starts_right.mean()) < 6


def test_audio_follows_digit_and_events():
    rate = 16000
    rng = np.random.default_rng(0)
    still = demo.Trajectory(np.full((50, 2), 32.0), np.zeros(50), np.full(50, 20.0), np.array([25]))
    wave = demo.render_audio(rng, still, digit=7, width=64, sample_rate=rate)
    assert len(wave) == 2 * rate
    quiet = wave[: rate // 2]  # before the click
    spectrum = np.abs(np.fft.rfft(quiet))
    peak_hz = np.argmax(spectrum) * rate / len(quiet)
    assert abs(peak_hz - demo.digit_pitch(7)) < 5
    click = np.abs(wave[rate : rate + 400]).max()  # frame 25 = 1.0 s
    assert click > 3 * np.abs(quiet).max()
    moving = demo.render_audio(np.random.default_rng(0), trajectory("BounceSides"), 7, 64, rate)
    assert np.abs(moving).mean() > np.abs(quiet).mean()  # louder when the digit moves fast
    assert len({round(demo.digit_pitch(d)) for d in range(10)}) == 10


def test_second_call_skips_generation(demo_root):
    marker = json.loads((demo_root / demo.MARKER_NAME).read_text())
    assert marker["complete"] and marker["size"] == "tiny" and marker["seed"] == 0
    assert marker["num_videos"] == len(demo.CLASS_NAMES) * TINY.num_groups
    stamp = (demo_root / "MoveLeft" / "v_MoveLeft_g01_c01.mp4").stat().st_mtime_ns
    start = time.perf_counter()
    assert demo.generate_demo(demo_root, size="tiny", seed=0) == demo_root
    assert time.perf_counter() - start < 1.0
    assert (demo_root / "MoveLeft" / "v_MoveLeft_g01_c01.mp4").stat().st_mtime_ns == stamp


@pytest.fixture
def micro_size(monkeypatch):
    """A very small size so that regeneration can be tested quickly."""
    size = demo.DemoSize(num_groups=3, clips_per_group=1, seconds=(0.4, 0.4), resolution=32, audio_rate=16000)
    monkeypatch.setitem(demo.DEMO_SIZES, "micro", size)
    return "micro"


def test_regenerates_when_seed_changes(tmp_path, micro_size):
    root = tmp_path / "data"
    demo.generate_demo(root, size=micro_size, seed=0, workers=1)
    clip = root / "BounceFloor" / "v_BounceFloor_g02_c01.mp4"
    first = clip.read_bytes()
    (root / "ZoomIn" / "stale.mp4").write_bytes(b"left over")
    demo.generate_demo(root, size=micro_size, seed=1, workers=2)
    assert clip.read_bytes() != first
    assert not (root / "ZoomIn" / "stale.mp4").exists()  # the old class folders were cleared
    assert json.loads((root / demo.MARKER_NAME).read_text())["seed"] == 1
    assert len(list(root.glob("*/*.mp4"))) == 3 * len(demo.CLASS_NAMES)


def test_interrupted_generation_is_redone(tmp_path, micro_size):
    root = tmp_path / "data"
    demo.generate_demo(root, size=micro_size, seed=0, workers=1)
    marker = json.loads((root / demo.MARKER_NAME).read_text())
    (root / demo.MARKER_NAME).write_text(json.dumps(dict(marker, complete=False)))
    (root / "MoveUp" / "v_MoveUp_g01_c01.mp4").unlink()
    demo.generate_demo(root, size=micro_size, seed=0, workers=1)
    assert (root / "MoveUp" / "v_MoveUp_g01_c01.mp4").exists()


def test_bad_output_and_size_give_clear_errors(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("do not delete")
    with pytest.raises(DataError, match="was not written by `vidssl data demo`"):
        demo.generate_demo(foreign, size="tiny")
    assert (foreign / "thesis.txt").exists()
    with pytest.raises(UserError, match="unknown demo size 'huge'; choose one of tiny, default, large"):
        demo.generate_demo(tmp_path / "x", size="huge")
    with pytest.raises(UserError, match="unknown demo size"):
        demo.generate_movie_demo(tmp_path / "y", size="huge")


def test_default_size_meets_the_spec():
    size = demo.DEMO_SIZES["default"]
    assert len(demo.CLASS_NAMES) * size.num_groups * size.clips_per_group >= 800
    assert size.seconds[0] >= 2.0 and size.resolution >= 64
    assert demo.DEMO_SIZES["large"].resolution >= 112


# --------------------------------------------------------------------------------------
# movie variant (MovieNet-SSeg / BaSSL)


def load_ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_movie_files_and_annotations(movie_root):
    movies = json.loads((movie_root / "movies.json").read_text())
    spec = demo.MOVIE_SIZES["tiny"]
    assert len(movies) == sum(spec.num_movies)
    vid2idx = json.loads((movie_root / "anno" / "vid2idx.json").read_text())
    assert vid2idx == {m["movie_id"]: i for i, m in enumerate(movies)}
    labelled = {split: load_ndjson(movie_root / "anno" / f"anno.{split}.ndjson") for split in ("train", "val", "test")}
    all_records = load_ndjson(movie_root / "anno" / "anno.trainvaltest.ndjson")
    assert all_records == labelled["train"] + labelled["val"] + labelled["test"]
    split_movies = {split: {r["video_id"] for r in records} for split, records in labelled.items()}
    assert not (split_movies["train"] & split_movies["val"]) and not (split_movies["train"] & split_movies["test"])
    assert [len(split_movies[s]) for s in ("train", "val", "test")] == list(spec.num_movies)
    by_movie = {m["movie_id"]: m for m in movies}
    global_scenes = set()
    for record in all_records:
        assert set(record) == {"video_id", "shot_id", "num_shot", "boundary_label", "global_video_id",
                               "invideo_scene_id", "global_scene_id"}
        shots = by_movie[record["video_id"]]["shots"]
        index = int(record["shot_id"])
        assert len(record["shot_id"]) == 4 and record["num_shot"] == len(shots)
        assert record["global_video_id"] == vid2idx[record["video_id"]]
        assert record["invideo_scene_id"] == shots[index]["scene"]
        following = shots[index + 1]["scene"] if index + 1 < len(shots) else shots[index]["scene"]
        assert record["boundary_label"] == int(following != shots[index]["scene"])
        global_scenes.add((record["video_id"], record["invideo_scene_id"], record["global_scene_id"]))
    # global scene ids are unique across movies
    assert len({g for _, _, g in global_scenes}) == len(global_scenes)
    pretrain = load_ndjson(movie_root / "anno" / "anno.pretrain.ndjson")
    assert {r["video_id"] for r in pretrain} == split_movies["train"]
    assert {r["boundary_label"] for r in pretrain} == {-1}
    assert sum(r["boundary_label"] for r in labelled["train"]) >= 2  # there are scenes to find


def test_movie_scenes_group_shots(movie_root):
    for movie in json.loads((movie_root / "movies.json").read_text()):
        shots = movie["shots"]
        scenes = [s["scene"] for s in shots]
        assert scenes == sorted(scenes) and scenes[0] == 0 and len(set(scenes)) >= 5
        assert any(scenes.count(s) > 1 for s in set(scenes))  # some scenes hold several shots
        starts = [s["start"] for s in shots]
        assert starts[0] == 0 and all(a["end"] == b["start"] for a, b in zip(shots, shots[1:]))


def test_movie_video_keyframes_and_shot_file(movie_root):
    movies = json.loads((movie_root / "movies.json").read_text())
    movie = movies[0]
    movie_id, shots = movie["movie_id"], movie["shots"]
    with av.open(str(movie_root / "videos" / f"{movie_id}.mp4")) as container:
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == shots[-1]["end"] == movie["num_frames"]
    shot_lines = read_lines(movie_root / "scene318" / "shot_movie318" / f"{movie_id}.txt")
    assert len(shot_lines) == len(shots)
    for index, (shot, line) in enumerate(zip(shots, shot_lines)):
        start, end, *keyframes = map(int, line.split())
        assert (start, end) == (shot["start"], shot["end"] - 1) and keyframes == shot["keyframes"]
        assert keyframes[0] == start and keyframes[2] == end and start <= keyframes[1] <= end
        for k, frame_index in enumerate(keyframes):
            image = cv2.imread(str(movie_root / "240P_frames" / movie_id / f"shot_{index:04d}_img_{k}.jpg"))
            assert image is not None and image.shape == frames[0].shape
            # the keyframe is the decoded frame (up to JPEG and H.264 losses)
            assert np.abs(image[..., ::-1].astype(int) - frames[frame_index].astype(int)).mean() < 8
    # a cut between scenes changes the picture more than the frames inside a shot do
    shot = max(shots, key=lambda s: s["end"] - s["start"])
    inside = np.abs(frames[shot["start"] + 1].astype(int) - frames[shot["start"]].astype(int)).mean()
    cuts = [s["start"] for prev, s in zip(shots, shots[1:]) if s["scene"] != prev["scene"]]
    across = np.mean([np.abs(frames[c].astype(int) - frames[c - 1].astype(int)).mean() for c in cuts])
    assert across > 3 * inside
    readme = (movie_root / "README.txt").read_text()
    assert "boundary_label" in readme and "240P_frames" in readme


def test_motions_are_large_and_fast_at_the_demo_stride():
    """Format 2: between two frames 3 apart (the tiny presets' stride) every motion changes the
    digit's pose clearly, and digits cover a large part of the frame, so a tiny network at 32²
    can see the motion (format 1's smaller, slower digits took a supervised tiny R3D-18 > 1000 steps)."""
    width, stride = 64, 3
    for seed in range(20):
        for name in ("MoveLeft", "MoveRight", "MoveUp", "MoveDown", "BounceSides"):
            t = trajectory(name, seed=seed, width=width)
            step = np.linalg.norm(t.centre[stride:] - t.centre[:-stride], axis=1)
            assert np.median(step) >= 3.5, name
            assert t.size.min() >= 0.42 * width - 1e-6
        for name in ("RotateClockwise", "RotateCounterclockwise"):
            t = trajectory(name, seed=seed, width=width)
            assert np.abs(t.angle[stride:] - t.angle[:-stride]).min() >= 28
        for name in ("ZoomIn", "ZoomOut"):
            t = trajectory(name, seed=seed, width=width)
            assert np.median(np.abs(t.size[stride:] - t.size[:-stride])) >= 5
        floor = trajectory("BounceFloor", seed=seed, width=width)
        assert len(floor.events) >= 2  # at least two bounces in 2 s


def test_backgrounds_have_half_contrast():
    rng = np.random.default_rng(0)
    for _ in range(5):
        background = demo._make_background(rng, 64)
        assert background.image.std(axis=(0, 1)).max() < 25  # texture, clutter and stripes, toned down


def test_dialogue_movies_cut_between_recurring_setups_of_one_scene():
    """``dialogue`` sizes: each scene's shots cut between 2-3 setups of that scene, never the same one
    twice in a row; a setup keeps its digit; no setup is shared between scenes."""
    from vidssl.data.demo.movies import MOVIE_SIZES, plan_movie

    spec = MOVIE_SIZES["dialogue"]
    for movie in range(4):
        shots = plan_movie(0, movie, spec)
        scene_of, digit_of = {}, {}
        for shot in shots:
            assert scene_of.setdefault(shot["setup"], shot["scene"]) == shot["scene"]
            assert digit_of.setdefault(shot["setup"], shot["digit"]) == shot["digit"]
        for a, b in zip(shots, shots[1:]):
            if a["scene"] == b["scene"]:
                assert a["setup"] != b["setup"]
        per_scene = {}
        for shot in shots:
            per_scene.setdefault(shot["scene"], set()).add(shot["setup"])
        assert all(2 <= len(s) <= 3 for s in per_scene.values())
    # the action-demo sizes keep a new camera angle every shot (no "setup")
    assert "setup" not in plan_movie(0, 0, MOVIE_SIZES["default"])[0]


def test_dialogue_shots_of_one_setup_share_their_frame_and_other_setups_do_not():
    from dataclasses import replace

    from vidssl.data.demo.movies import MOVIE_SIZES, _MovieJob, _render_movie

    spec = replace(MOVIE_SIZES["dialogue"], resolution=48, scenes_per_movie=(2, 2), shot_seconds=(0.4, 0.4))
    frames, audio, shots = _render_movie(_MovieJob("/unused", 0, "tt0000001", 0, spec))
    assert frames.shape[0] == shots[-1]["end"] and audio.size > 0
    first = [frames[s["start"]].astype(float) for s in shots]
    same = [np.abs(first[i] - first[j]).mean() for i in range(len(shots)) for j in range(i + 1, len(shots))
            if shots[i]["setup"] == shots[j]["setup"]]
    other = [np.abs(first[i] - first[j]).mean() for i in range(len(shots)) for j in range(i + 1, len(shots))
             if shots[i]["setup"] != shots[j]["setup"]]
    assert same and other and max(same) < min(other)
