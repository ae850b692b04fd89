"""Writes small test videos with PyAV (used by tests/data/conftest.py and the data tests).

Frames encode their own index: frame ``k`` is filled with grey level ``(10 * k) % 250`` plus
a bright square, so tests can check which frames a decode returned. Audio is a sine whose
amplitude ramps with time, so a decoded span can be located.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

FPS = 25
AUDIO_RATE = 16000
H264 = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def frame_level(k: int) -> int:
    return (10 * k) % 250


def write_video(
    path: Path,
    num_frames: int = 50,
    fps: int = FPS,
    size: tuple[int, int] = (48, 64),
    codec: str = "mpeg4",
    audio_seconds: float | None = None,
    gop: int = 12,
    faststart: bool = True,
    audio_codec: str = "aac",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write an MP4 with ``num_frames`` frames of ``size`` (H, W) and optional mono audio.

    ``audio_seconds`` None: no audio track; otherwise that many seconds of audio (shorter than
    the video to imitate a track cut short).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    # faststart puts the index first, so a truncated copy still opens (and loses its tail).
    mp4 = path.suffix == ".mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart and mp4 else {}) as container:
        options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if codec in ("h264", "libx264"):
            options.update(preset="ultrafast", tune="zerolatency")
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        astream = None
        if audio_seconds is not None:
            astream = container.add_stream(audio_codec, rate=AUDIO_RATE if audio_codec != "ac3" else 48000)
            astream.layout = "mono"
        for k in range(num_frames):
            img = np.full((height, width, 3), frame_level(k), dtype=np.uint8)
            img[4:12, 4:12] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")  # converted to pix_fmt by the encoder
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            rate = astream.codec_context.sample_rate
            total = int(audio_seconds * rate)
            t = np.arange(total) / rate
            wave = (0.1 + 0.8 * t / max(audio_seconds, 1e-6)) * np.sin(2 * np.pi * 440 * t)
            chunk = 1024
            for i in range(0, total, chunk):
                part = wave[i : i + chunk].astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
                frame.sample_rate = rate
                frame.pts = i
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
