"""``vidssl data prepare``: re-encoded copies at the training scale (vidssl.data.prepare)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from video_factory import H264, frame_level, write_video
from vidssl.data.decode import PyAVDecoder, probe
from vidssl.data.index import build_manifest, load_manifest
from vidssl.data.prepare import STATE_NAME, PrepareOptions, prepare_dataset, prepare_file
from vidssl.errors import ConfigError


def levels(frames: torch.Tensor) -> np.ndarray:
    """Grey level of each frame away from the bright square (see video_factory)."""
    h, w = frames.shape[1], frames.shape[2]
    return frames[:, int(0.7 * h), int(0.7 * w), 0].numpy().astype(int)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A folder dataset: 2 classes, MPEG-4 / H.264 with a 250-frame GOP / AVI with AC3, one without audio,
    one unreadable file."""
    root = tmp_path_factory.mktemp("prepare") / "src"
    write_video(root / "train" / "a" / "v1.mp4", num_frames=50, size=(96, 128), audio_seconds=2.0)
    write_video(root / "train" / "a" / "v2.mp4", num_frames=60, size=(96, 128), codec=H264, gop=250)
    write_video(root / "train" / "b" / "v3.avi", num_frames=30, size=(72, 96), codec="msmpeg4v3", audio_codec="ac3",
                audio_seconds=1.2)
    write_video(root / "test" / "b" / "v4.mp4", num_frames=40, size=(128, 96))  # portrait, no audio
    (root / "test" / "b" / "broken.mp4").write_text("not a video\n" * 10)
    return root


OPTIONS = PrepareOptions(short_side=32, gop_seconds=0.4, preset="ultrafast")


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    dst = tmp_path_factory.mktemp("prepared") / "dst"
    calls = []
    report = prepare_dataset(build_manifest(source, write=False), dst, OPTIONS, workers=2, progress=calls.append)
    assert sum(calls) == 5  # the progress callback counts every file
    return dst, report


def test_prepared_files_are_small_with_short_gops_every_frame_and_audio(source, prepared):
    dst, report = prepared
    by_name = {os.path.basename(f.source): f for f in report.files}
    assert sorted(os.path.relpath(f.output, dst) for f in report.files) == [
        "test/b/broken.mp4", "test/b/v4.mp4", "train/a/v1.mp4", "train/a/v2.mp4", "train/b/v3.mp4"]
    for name, frames, size, audio in [("v1.mp4", 50, (42, 32), True), ("v2.mp4", 60, (42, 32), False),
                                      ("v3.avi", 30, (42, 32), True), ("v4.mp4", 40, (32, 42), False)]:
        done = by_name[name]
        assert done.error is None and done.frames == frames and done.source_frames == frames
        info = probe(done.output)
        assert (info.width, info.height) == size and info.video_codec == "h264"
        assert info.num_frames == frames and info.has_audio == audio
        assert info.keyframe_interval == pytest.approx(10.0)  # 0.4 s at 25 fps, whatever the source's GOP
        assert done.bytes_out > 0 and done.bytes_in == os.path.getsize(done.source)
    assert by_name["broken.mp4"].error and not os.path.exists(by_name["broken.mp4"].output)
    assert report.bytes_in > 0 and report.bytes_out > 0
    assert not list(dst.rglob("*.partial"))


def test_prepared_frames_and_audio_match_the_source(source, prepared):
    dst, _ = prepared
    decoder = PyAVDecoder()
    clip = decoder.decode(dst / "train" / "a" / "v2.mp4", 1.0, 1.4)  # was one GOP of 60 frames
    expected = np.array([frame_level(k) for k in range(25, 35)])
    assert np.abs(levels(clip.frames) - expected).max() <= 10
    before = decoder.decode(source / "train" / "a" / "v1.mp4", 0.5, 1.5, audio_rate=8000)
    after = decoder.decode(dst / "train" / "a" / "v1.mp4", 0.5, 1.5, audio_rate=8000)
    assert not after.audio_padded and after.audio.shape == before.audio.shape == (8000,)
    # the fixture's sine ramps in amplitude: the prepared track is aligned with the frames
    assert after.audio[:400].abs().max().item() == pytest.approx(before.audio[:400].abs().max().item(), abs=0.05)
    assert after.audio[-400:].abs().max().item() == pytest.approx(before.audio[-400:].abs().max().item(), abs=0.05)


def test_manifest_points_at_the_prepared_files_with_labels_and_splits(source, prepared):
    dst, _ = prepared
    src_manifest = build_manifest(source, write=False)
    manifest = load_manifest(dst)
    assert manifest.root == str(dst) and manifest.class_names == src_manifest.class_names
    pairs = {(r.path, r.label, r.splits[1]) for r in manifest.records}
    assert ("train/b/v3.mp4", 1, "train") in pairs and ("test/b/v4.mp4", 1, "test") in pairs
    broken = [r for r in manifest.records if r.path.endswith("broken.mp4")]
    assert len(broken) == 1 and "unreadable" in broken[0].error  # kept, marked, never trained on
    from vidssl.data.datasets import VideoDataset
    from vidssl.data.sampling import RandomClipPlan, ViewSpec

    item = VideoDataset(manifest, RandomClipPlan(ViewSpec("clip", num_frames=4, stride=2, canvas=(32, 32))), split="train")[0]
    assert item["clips"]["clip"].shape == (4, 32, 32, 3)


def test_rerun_resumes_and_other_options_are_refused(source, prepared):
    dst, first = prepared
    keep = dst / "train" / "a" / "v1.mp4"
    mtime = keep.stat().st_mtime_ns
    (dst / "train" / "a" / "v2.mp4").unlink()  # as if the run had been killed before this file
    (dst / "train" / "a" / "v2.mp4.partial").write_bytes(b"half a file")
    report = prepare_dataset(build_manifest(source, write=False), dst, OPTIONS, workers=1)
    done = {os.path.basename(f.output): f for f in report.files}
    assert done["v1.mp4"].reused and keep.stat().st_mtime_ns == mtime
    assert not done["v2.mp4"].reused and done["v2.mp4"].error is None and probe(done["v2.mp4"].output).num_frames == 60
    assert not (dst / "train" / "a" / "v2.mp4.partial").exists()
    with pytest.raises(ConfigError, match="other options"):
        prepare_dataset(build_manifest(source, write=False), dst, PrepareOptions(short_side=64, gop_seconds=0.4))
    assert json.loads((dst / STATE_NAME).read_text())["options"]["short_side"] == 32


def test_bad_destinations_and_options(source, tmp_path):
    manifest = build_manifest(source, write=False)
    with pytest.raises(ConfigError, match="inside the source"):
        prepare_dataset(manifest, source / "prepared", OPTIONS)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an earlier"):
        prepare_dataset(manifest, foreign, OPTIONS)
    for kwargs, message in [({"short_side": 8}, "at least 16"), ({"gop_seconds": 0}, "gop-seconds"),
                            ({"crf": 60}, "crf"), ({"preset": "warp"}, "preset")]:
        with pytest.raises(ConfigError, match=message):
            PrepareOptions(**kwargs)


def test_same_output_name_is_refused(tmp_path):
    root = tmp_path / "src"
    write_video(root / "a" / "clip.mp4", num_frames=10)
    write_video(root / "a" / "clip.avi", num_frames=10, codec="mpeg4")
    with pytest.raises(ConfigError, match="would both be written"):
        prepare_dataset(build_manifest(root, write=False), tmp_path / "dst", OPTIONS)


def test_no_upscaling_and_keep_size(tmp_path):
    src = write_video(tmp_path / "small.mp4", num_frames=10, size=(24, 30))
    done = prepare_file(str(src), str(tmp_path / "out.mp4"), PrepareOptions(short_side=64, gop_seconds=1.0))
    info = probe(done.output)
    assert (info.width, info.height) == (30, 24) and done.frames == 10
    done = prepare_file(str(src), str(tmp_path / "same.mp4"), PrepareOptions(short_side=None))
    assert (probe(done.output).width, probe(done.output).height) == (30, 24)


def test_cli_reports_space_and_decode_speed(source, tmp_path, capsys):
    from vidssl.cli import main

    assert main(["data", "prepare", str(source), str(tmp_path / "dst"), "--short-side", "32", "--gop-seconds", "0.4",
                 "--preset", "ultrafast", "--workers", "1", "--clips", "2"]) == 0
    out = capsys.readouterr().out
    assert "prepared 4 videos (short side 32, keyframe every 0.4 s" in out and "1 failed" in out
    assert "space " in out and "% of the source" in out
    assert "decode " in out and "ms/clip" in out and "speed-up" in out
    assert (tmp_path / "dst" / "vidssl_manifest.json").is_file()
    assert main(["data", "prepare", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
