"""What the decoder backends share: probed metadata, decoded clips, the decoder interface.

Times are seconds from the start of the video stream (the stream's ``start_time`` is
subtracted, so files whose first timestamp is not 0 behave like the others).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about one file.

    ``num_frames`` is the number of video packets actually present when the file
    was demuxed (``frames_counted=True``), not the header's claim, which real files
    get wrong; ``duration`` is then ``num_frames / fps``, the span that frame indices
    cover. ``keyframe_interval`` is the mean distance between consecutive keyframes in
    frames (the frame count when there is one keyframe; None when not measured).
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate: int | None = None
    video_codec: str = ""
    audio_codec: str | None = None
    keyframe_interval: float | None = None
    num_keyframes: int | None = None
    header_frames: int | None = None
    frames_counted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VideoInfo":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Clip:
    """Decoded frames and audio of one time span ``[start, end)`` (seconds).

    Attributes:
        frames: uint8 ``T×H×W×C`` (RGB). ``T`` may be 0 only if the span lies past the
            last decodable frame.
        frame_times: float64 ``T`` seconds of each kept frame (from the stream start).
        audio: float32 mono ``N`` in [-1, 1] at ``audio_rate`` with
            ``N = round((end - start) * audio_rate)``, or None when no audio was asked
            for or the file has none.
        audio_padded: True when part of the audio span was missing and zero-filled.
        truncated: True when decoding stopped early on a stream error.
    """

    frames: torch.Tensor
    frame_times: np.ndarray
    start: float
    end: float
    fps: float
    audio: torch.Tensor | None = None
    audio_rate: int | None = None
    audio_padded: bool = False
    truncated: bool = False
    has_audio: bool = False


class Decoder(Protocol):
    def decode(
        self,
        path: str | os.PathLike,
        start: float,
        end: float,
        *,
        fps: float | None = None,
        stride: int | None = None,
        short_side: int | None = None,
        audio_rate: int | None = None,
        frame_indices: np.ndarray | None = None,
    ) -> Clip: ...

    def decode_audio(self, path: str | os.PathLike, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]: ...


def resized_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(H, W) after scaling so the shorter side equals ``short_side`` (aspect kept)."""
    if short_side is None:
        return height, width
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _select_times(times: np.ndarray, start: float, end: float, src_fps: float, fps: float | None, stride: int | None) -> np.ndarray:
    """Indices into ``times`` (sorted frame times inside the span) to keep.

    ``stride`` keeps every stride-th source frame; ``fps`` resamples to a target rate by
    taking, for each output time ``start + j/fps``, the latest frame shown at that time.
    """
    if fps is not None and stride is not None:
        raise ValueError("give fps or stride, not both")
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    if fps is not None:
        count = max(1, int(math.ceil((end - start) * fps - 1e-6)))
        targets = start + np.arange(count) / fps
        # A frame is shown from its timestamp until the next one; allow a quarter frame of timestamp jitter.
        idx = np.searchsorted(times, targets + 0.25 / src_fps, side="right") - 1
        return np.clip(idx, 0, len(times) - 1)
    step = stride or 1
    return np.arange(0, len(times), step)
