"""Probing and decoding real (generated) files, including broken ones."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from video_factory import AUDIO_RATE, frame_level, write_video
from vidssl.data.decode import PyAVDecoder, TorchCodecDecoder, get_decoder, probe, resized_size
from vidssl.errors import UserError, VideoDecodeError


def _torchcodec_works() -> bool:
    """torchcodec installed and able to load the system FFmpeg libraries."""
    if importlib.util.find_spec("torchcodec") is None:
        return False
    try:
        TorchCodecDecoder()
    except UserError:
        return False
    return True


TORCHCODEC = _torchcodec_works()
#: Every decode test runs on both backends (torchcodec where it is installed with a system FFmpeg; CI installs both).
BACKENDS = ["pyav", pytest.param("torchcodec", marks=pytest.mark.skipif(
    not TORCHCODEC, reason="torchcodec (with a system FFmpeg) not installed: pip install 'vidssl[torchcodec]'"))]


@pytest.fixture(params=BACKENDS)
def decoder(request):
    return get_decoder(request.param)


def levels(frames: torch.Tensor) -> np.ndarray:
    """Grey level of each frame, read away from the bright square (rows 4:12, cols 4:12)."""
    h, w = frames.shape[1], frames.shape[2]
    return frames[:, int(0.6 * h), int(0.6 * w), 0].numpy().astype(int)


def assert_frames(frames: torch.Tensor, indices) -> None:
    expected = np.array([frame_level(k) for k in indices])
    assert np.abs(levels(frames) - expected).max() <= 8, (levels(frames), expected)


def test_probe_reports_stream_facts(videos):
    info = probe(videos["av"])
    assert (info.fps, info.num_frames, info.width, info.height) == (25.0, 50, 64, 48)
    assert info.duration == pytest.approx(2.0)
    assert info.has_audio and info.audio_rate == AUDIO_RATE and info.audio_codec == "aac"
    assert info.video_codec == "mpeg4" and info.frames_counted
    assert info.keyframe_interval is not None and 1 <= info.keyframe_interval <= 50


def test_probe_without_audio_and_keyframes(videos):
    info = probe(videos["noaudio"])
    assert not info.has_audio and info.audio_rate is None and info.num_frames == 30
    few = probe(videos["fewkeys"])
    if few.video_codec == "h264":  # libx264 honours the 250-frame GOP
        assert few.num_keyframes == 1 and few.keyframe_interval == 60


def test_probe_counts_frames_when_header_lies(videos):
    info = probe(videos["truncated"])  # header says 100 frames; half the data is gone
    assert info.header_frames == 100
    assert 0 < info.num_frames < 100 and info.frames_counted
    assert info.duration == pytest.approx(info.num_frames / 25.0)


def test_decode_span_returns_frames_of_start_end(videos, decoder):
    clip = decoder.decode(videos["av"], 0.4, 1.2)
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape == (20, 48, 64, 3)
    np.testing.assert_allclose(clip.frame_times, 0.4 + np.arange(20) / 25, atol=1e-6)
    assert_frames(clip.frames, range(10, 30))


@pytest.mark.parametrize("name", ["h264", "fewkeys"])
def test_decode_seeks_in_h264_and_files_with_one_keyframe(videos, name, decoder):
    clip = decoder.decode(videos[name], 1.0, 1.4)
    assert clip.frames.shape[0] == 10
    assert_frames(clip.frames, range(25, 35))


def test_decode_stride_fps_and_short_side(videos, decoder):
    strided = decoder.decode(videos["av"], 0.4, 1.2, stride=2, short_side=24)
    assert strided.frames.shape == (10, 24, 32, 3)
    assert_frames(strided.frames, range(10, 30, 2))
    resampled = decoder.decode(videos["av"], 0.4, 1.2, fps=10)
    # output times 0.4, 0.5, ... take the frame shown at that time (at 25 fps: 0.40, 0.48, 0.60, ...)
    np.testing.assert_allclose(resampled.frame_times, [0.4, 0.48, 0.6, 0.68, 0.8, 0.88, 1.0, 1.08], atol=1e-6)
    with pytest.raises(ValueError, match="fps or stride"):
        decoder.decode(videos["av"], 0.0, 1.0, fps=10, stride=2)
    picked = decoder.decode(videos["av"], 0.4, 1.2, frame_indices=np.array([0, 5, 19, 40]))
    assert_frames(picked.frames, [10, 15, 29, 29])  # past the end repeats the last frame


def test_decode_threading_is_configurable(videos):
    default = PyAVDecoder().decode(videos["h264"], 0.2, 1.0)
    threaded = PyAVDecoder(thread_type="AUTO", thread_count=2).decode(videos["h264"], 0.2, 1.0)
    assert torch.equal(default.frames, threaded.frames)


def test_audio_span_is_resampled_and_aligned(videos, decoder):
    clip = decoder.decode(videos["av"], 0.5, 1.5, audio_rate=8000)
    assert clip.has_audio and clip.audio.dtype == torch.float32 and clip.audio.shape == (8000,)
    assert not clip.audio_padded and clip.audio_rate == 8000
    # the fixture's sine grows linearly in amplitude: 0.1 + 0.8 t / 2 -> 0.3 at 0.5 s, 0.7 at 1.5 s
    peak_start = clip.audio[:400].abs().max().item()
    peak_end = clip.audio[-400:].abs().max().item()
    assert peak_start == pytest.approx(0.32, abs=0.06) and peak_end == pytest.approx(0.68, abs=0.06)


def test_audio_cut_short_is_zero_padded(videos, decoder):
    clip = decoder.decode(videos["shortaudio"], 0.4, 1.6, audio_rate=8000)  # audio ends at 0.8 s
    assert clip.audio.shape == (9600,) and clip.audio_padded
    assert clip.audio[: 2400].abs().max() > 0.1  # 0.4 .. 0.7 s has sound
    assert clip.audio[4000:].abs().max() == 0  # after 0.9 s: zeros


def test_file_without_audio(videos, decoder):
    clip = decoder.decode(videos["noaudio"], 0.0, 0.8, audio_rate=16000)
    assert clip.audio is None and not clip.has_audio and clip.frames.shape[0] == 20


def test_truncated_file_returns_what_exists(videos, decoder):
    clip = decoder.decode(videos["truncated"], 0.0, 4.0, audio_rate=8000)
    count = clip.frames.shape[0]
    assert 0 < count < 100
    assert_frames(clip.frames, range(count))
    assert clip.audio.shape == (32000,)


def test_corrupted_middle_never_hangs(videos, tmp_path, decoder):
    data = bytearray(videos["long"].read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    try:
        clip = decoder.decode(broken, 0.0, 4.0, audio_rate=8000)
    except VideoDecodeError as exc:
        assert exc.path == str(broken)
    else:
        assert clip.frames.ndim == 4 and clip.audio.shape == (32000,)


@pytest.mark.parametrize("name, reason", [("empty", "empty"), ("text", "not a readable video"), ("headless", "not a readable video")])
def test_unreadable_files_raise_typed_error_naming_the_path(videos, name, reason, decoder):
    for call in (lambda p: probe(p), lambda p: decoder.decode(p, 0.0, 1.0)):
        with pytest.raises(VideoDecodeError, match=reason) as info:
            call(videos[name])
        assert info.value.path == str(videos[name]) and str(videos[name]) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="does not exist"):
        probe(tmp_path / "nope.mp4")


def test_resized_size_keeps_aspect():
    assert resized_size(48, 64, 24) == (24, 32)
    assert resized_size(64, 48, 24) == (32, 24)
    assert resized_size(48, 64, None) == (48, 64)


def test_decoder_registry_errors():
    with pytest.raises(UserError, match="unknown decoder 'nope'"):
        get_decoder("nope")


def test_torchcodec_missing_is_a_clear_user_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchcodec(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise ImportError("No module named 'torchcodec'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchcodec)
    with pytest.raises(UserError, match="pip install 'vidssl\\[torchcodec\\]'.*apt-get install ffmpeg"):
        get_decoder("torchcodec")


def test_torchcodec_without_ffmpeg_libraries_is_a_clear_user_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def libraries_missing(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise RuntimeError("Could not load libtorchcodec. Likely causes: FFmpeg is not properly installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", libraries_missing)
    with pytest.raises(UserError, match="cannot load FFmpeg's libraries.*apt-get install ffmpeg"):
        TorchCodecDecoder()


@pytest.mark.skipif(not TORCHCODEC, reason="torchcodec (with a system FFmpeg) not installed")
def test_torchcodec_matches_pyav_frames_and_resizes_in_the_decoder(videos):
    torchcodec = get_decoder("torchcodec")
    for name, span in [("av", (0.4, 1.2)), ("h264", (0.2, 1.4)), ("fewkeys", (1.0, 2.0))]:
        ref = PyAVDecoder().decode(videos[name], *span, frame_indices=np.array([0, 3, 5, 9]))
        clip = torchcodec.decode(videos[name], *span, frame_indices=np.array([0, 3, 5, 9]))
        np.testing.assert_allclose(clip.frame_times, ref.frame_times, atol=1e-6)
        assert np.abs(levels(clip.frames) - levels(ref.frames)).max() <= 8
    small = torchcodec.decode(videos["av"], 0.4, 1.2, short_side=24, frame_indices=np.arange(4))
    assert small.frames.shape == (4, 24, 32, 3) and small.frames.dtype == torch.uint8
    with pytest.raises(UserError, match="seek_mode"):
        TorchCodecDecoder(seek_mode="fast")


def test_odd_sizes_and_codecs(tmp_path, decoder):
    path = write_video(tmp_path / "odd.mp4", num_frames=12, size=(36, 50), fps=30)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.num_frames) == (50, 36, 30.0, 12)
    clip = decoder.decode(path, 0.0, 0.4, short_side=18)
    assert clip.frames.shape == (12, 18, 25, 3)


@pytest.mark.parametrize(
    "codec, pix_fmt, audio_codec",
    [("msmpeg4v3", "yuv420p", "ac3"), ("mpeg4", "yuv420p", "mp2"), ("cinepak", "rgb24", "libmp3lame")],
)
def test_old_avi_codecs(tmp_path, codec, pix_fmt, audio_codec, decoder):
    """UCF101/HMDB51-era files: DivX (msmpeg4v3), XviD-style MPEG-4 and cinepak in AVI, with AC3/MP2/MP3 audio."""
    path = write_video(tmp_path / f"{codec}.avi", num_frames=30, codec=codec, pix_fmt=pix_fmt,
                       audio_codec=audio_codec, audio_seconds=1.2)
    info = probe(path)
    assert info.num_frames == 30 and info.has_audio and info.video_codec.startswith(codec[:6])  # msmpeg4v3 -> "msmpeg4"
    clip = decoder.decode(path, 0.4, 0.8, audio_rate=8000)
    assert clip.frames.shape[0] == 10
    if codec == "cinepak":  # FFmpeg's cinepak encoder shifts timestamps by 2 frames; consecutive frames still
        assert np.abs(np.diff(levels(clip.frames)) - 10).max() <= 8
    else:
        assert_frames(clip.frames, range(10, 20))
    assert clip.audio.shape == (3200,) and clip.audio.abs().max() > 0.05
