"""Small generated videos for the data tests (independent of the embedded demo dataset)."""

from __future__ import annotations

import pytest
from video_factory import H264, write_video


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """A few small files: with/without audio, mpeg4/h264, truncated, empty, text."""
    root = tmp_path_factory.mktemp("videos")
    out = {
        "av": write_video(root / "av.mp4", num_frames=50, audio_seconds=2.0),
        "noaudio": write_video(root / "noaudio.mp4", num_frames=30),
        "shortaudio": write_video(root / "shortaudio.mp4", num_frames=50, audio_seconds=0.8),
        "h264": write_video(root / "h264.mp4", num_frames=40, codec=H264, audio_seconds=1.6),
        "fewkeys": write_video(root / "fewkeys.mp4", num_frames=60, codec=H264, gop=250),
        "long": write_video(root / "long.mp4", num_frames=100, audio_seconds=4.0),
    }
    data = out["long"].read_bytes()
    truncated = root / "truncated.mp4"  # index intact, second half of the data gone
    truncated.write_bytes(data[: len(data) // 2])
    out["truncated"] = truncated
    data = write_video(root / "moov_last.mp4", num_frames=20, faststart=False).read_bytes()
    headless = root / "headless.mp4"  # index written last and cut off: unreadable
    headless.write_bytes(data[: len(data) // 2])
    out["headless"] = headless
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    out["empty"] = empty
    text = root / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    out["text"] = text
    return out
