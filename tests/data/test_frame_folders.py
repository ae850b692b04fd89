"""Folders of frames read as videos (vidssl.data.decoders.frames) and MovieNet's keyframes as BaSSL's input
(the ``movienet_keyframes`` layout)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vidssl.data.datasets import VideoDataset
from vidssl.data.decode import FrameFolderDecoder, frame_files, get_decoder, probe_frame_folder
from vidssl.data.index import build_manifest, detect_format
from vidssl.data.layouts.movienet import keyframe_path, read_movienet, read_movienet_keyframes_layout
from vidssl.data.sampling import RandomClipPlan, ShotWindowPlan, ViewSpec
from vidssl.errors import DataError, VideoDecodeError


def _write(folder, name, value, size=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(folder / name)


def test_frames_are_the_images_in_the_order_of_the_numbers_in_their_names(tmp_path):
    for name, value in [("shot_0010_img_0.png", 30), ("shot_0002_img_1.png", 20), ("shot_0002_img_0.png", 10)]:
        _write(tmp_path, name, value)
    (tmp_path / "notes.txt").write_text("not a frame")
    assert [p.rsplit("/", 1)[1] for p in frame_files(tmp_path)] == [
        "shot_0002_img_0.png", "shot_0002_img_1.png", "shot_0010_img_0.png"]
    info = probe_frame_folder(tmp_path)
    assert (info.num_frames, info.fps, info.height, info.width, info.has_audio) == (3, 1.0, 24, 32, False)
    clip = get_decoder("frames").decode(tmp_path, 1.0, 3.0, frame_indices=np.array([1]), short_side=12)
    assert clip.frames.shape == (1, 12, 16, 3) and int(clip.frames[0, 5, 5, 0]) == 30  # frame 2, shot 10
    whole = FrameFolderDecoder().decode(tmp_path)
    assert whole.frames[:, 0, 0, 0].tolist() == [10, 20, 30] and whole.frame_times.tolist() == [0.0, 1.0, 2.0]


def test_bad_frame_folders_fail_naming_the_folder(tmp_path):
    with pytest.raises(VideoDecodeError, match="does not exist"):
        probe_frame_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="holds no images"):
        probe_frame_folder(tmp_path / "empty")
    _write(tmp_path / "mixed", "f_1.png", 0, size=(24, 32))
    _write(tmp_path / "mixed", "f_2.png", 0, size=(30, 32))
    with pytest.raises(VideoDecodeError, match="different sizes"):
        FrameFolderDecoder().decode(tmp_path / "mixed")
    with pytest.raises(VideoDecodeError, match="the folder has 2"):
        FrameFolderDecoder().decode(tmp_path / "mixed", 0.0, 2.0, frame_indices=np.array([5]))


def _keyframes_tree(movie_root, tmp_path):
    root = tmp_path / "movies"
    shutil.copytree(movie_root, root, ignore=shutil.ignore_patterns("vidssl_manifest*.json"))
    return root


def test_a_shot_window_of_keyframes_is_one_of_each_shot_s_keyframes(movie_root, tmp_path):
    """Every frame of a window item equals one of the three released keyframes of the shot it stands for,
    the middle one with ``center=True``, and the random draws reach all three (BaSSL's pretraining input)."""
    root = _keyframes_tree(movie_root, tmp_path)
    shutil.rmtree(root / "videos")  # MovieNet as released: keyframes only
    assert detect_format(root) == "movienet_keyframes"
    manifest = build_manifest(root, write=False)
    assert manifest.format == "movienet_keyframes" and manifest.frame_folders and manifest.media == "frames"
    movie = read_movienet(root)[0]
    record = next(r for r in manifest.records if r.annotations["video_id"] == movie.video_id)
    assert record.annotations["shots"] == [[3 * s, 3 * s + 3] for s in range(len(movie.shots))]
    size = probe_frame_folder(root / record.path)
    view = ViewSpec("frames", kind="image", canvas=(size.height, size.width))
    plan = ShotWindowPlan(view, shots_per_side=2)
    dataset = VideoDataset(manifest, plan, decoder="pyav")  # the manifest's media picks the frames decoder
    assert dataset.decoder_name == "frames"
    index = next(i for i, (r, _) in enumerate(dataset.items) if dataset.records[r] is record)
    drawn = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        item = dataset[index + 3]  # the window around shot 3: shots 1..5
        shots = item["shot_index"].tolist()
        assert shots == [1, 2, 3, 4, 5]
        for frame, shot in zip(item["clips"]["frames"], shots):
            choices = [np.asarray(Image.open(keyframe_path(root, movie.video_id, shot, k)).convert("RGB"))
                       for k in range(3)]
            matches = [k for k, c in enumerate(choices) if np.array_equal(frame.numpy(), c)]
            assert matches, f"shot {shot}: the frame is none of its keyframes"
            drawn.add(matches[0])
    assert drawn == {0, 1, 2}
    centred = VideoDataset(manifest, ShotWindowPlan(view, shots_per_side=2, center=True))[index + 3]
    middle = np.asarray(Image.open(keyframe_path(root, movie.video_id, 3, 1)).convert("RGB"))
    assert np.array_equal(centred["clips"]["frames"][2].numpy(), middle)


def test_missing_keyframes_drop_their_shot_and_a_changed_folder_is_refused(movie_root, tmp_path):
    root = _keyframes_tree(movie_root, tmp_path)
    movie = read_movienet(root)[0]
    for k in range(3):
        keyframe_path(root, movie.video_id, 4, k).unlink()
    records, _, _ = read_movienet_keyframes_layout(root)
    record = next(r for r in records if r.annotations["video_id"] == movie.video_id)
    assert 4 not in record.annotations["shot_ids"]
    assert len(record.annotations["shots"]) == len(movie.shots) - 1
    assert record.annotations["shots"][4] == [12, 15]  # shot 5 follows shot 3 directly
    manifest = build_manifest(root, format="movienet_keyframes", write=False)
    view = ViewSpec("frames", kind="image", canvas=(32, 32))
    dataset = VideoDataset(manifest, ShotWindowPlan(view, shots_per_side=1), max_retries=0)
    index = next(i for i, (r, _) in enumerate(dataset.items) if dataset.records[r].annotations["video_id"] == movie.video_id)
    _write(root / "240P_frames" / movie.video_id, "shot_0004_img_0.jpg", 0)  # frame i is now another image
    with pytest.raises(DataError, match="re-index"):
        dataset[index]


def test_keyframe_folders_give_image_views_only(movie_root, tmp_path):
    root = _keyframes_tree(movie_root, tmp_path)
    manifest = build_manifest(root, format="movienet_keyframes", write=False)
    with pytest.raises(DataError, match="frame folders .* need videos"):
        VideoDataset(manifest, RandomClipPlan(ViewSpec("clip", num_frames=4, stride=1, canvas=(32, 32))))
    assert detect_format(root) == "movienet"  # the copy still has its movies under videos/


def test_a_keyframe_tree_without_keyframes_is_a_clear_error(movie_root, tmp_path):
    root = _keyframes_tree(movie_root, tmp_path)
    shutil.rmtree(root / "240P_frames")
    with pytest.raises(DataError, match="no movie of .* has keyframes"):
        read_movienet_keyframes_layout(root)


def test_a_frame_folder_decodes_without_torch_threads(tmp_path):
    """The decoder returns uint8 RGB frames like the video backends."""
    _write(tmp_path, "a_1.png", 7)
    clip = FrameFolderDecoder(thread_count=1).decode(tmp_path, 0.0, 1.0)
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape == (1, 24, 32, 3) and clip.audio is None


def test_one_movienet_tree_is_read_as_movies_or_as_keyframes_whichever_was_indexed_first(movie_root, tmp_path):
    """A tiny preset (format=movienet, the movie files) and a full one (format=movienet_keyframes) on one tree:
    the reading asked for is built in memory, the saved manifest is kept; other mismatches still fail."""
    from vidssl.data.index import MANIFEST_NAME, load_manifest
    from vidssl.data.module import open_manifest

    root = _keyframes_tree(movie_root, tmp_path)
    build_manifest(root, format="movienet")  # saved
    keyframes = open_manifest(root, "movienet_keyframes")
    assert keyframes.frame_folders and all(r.path.startswith("240P_frames/") for r in keyframes.records)
    assert load_manifest(root).format == "movienet" and (root / MANIFEST_NAME).is_file()
    assert open_manifest(root, "movienet").format == "movienet"
    with pytest.raises(DataError, match="re-index it"):
        open_manifest(root, "ucf101")
