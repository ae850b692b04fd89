"""A folder of still frames read as one video: MovieNet's keyframes (``240P_frames/<movie>/``).

MovieNet-SSeg is released as three JPEG keyframes per shot (``shot_XXXX_img_{0,1,2}.jpg``, 240-pixel
short side), not as movies, and BaSSL pretrains on exactly those: one of a shot's keyframes at random.
So that this goes through the one data path (DESIGN.md principle 1), a folder of frames is handled as a
video whose frames are the folder's images in order, at a nominal 1 fps: :func:`frame_files` gives that
order (names sorted by the numbers in them, so ``shot_0002_img_1`` comes after ``shot_0002_img_0`` and
before ``shot_0010_img_0``), :func:`probe_frame_folder` a :class:`~vidssl.data.decoders.base.VideoInfo`
with one frame per image, and :class:`FrameFolderDecoder` decodes only the frames asked for
(``frame_indices``), each through the still-image decoder (Pillow, reduced-scale JPEG decoding).

A shot-window item then reads 17 small JPEGs instead of seeking into a movie 17 times and decoding up
to a keyframe interval of frames for each (BENCHMARKS.md: the BaSSL pretraining loader).

Failing loudly: an empty folder, an unreadable image (the dataset skips and reports it like a corrupt
video), and frames of different sizes in one clip (they cannot be stacked; re-extract the keyframes at
one size) raise :class:`~vidssl.errors.VideoDecodeError` naming the path.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import numpy as np
import torch

from vidssl.data.decoders.base import Clip, VideoInfo
from vidssl.data.decoders.image import IMAGE_EXTENSIONS, ImageDecoder, probe_image
from vidssl.errors import VideoDecodeError

__all__ = ["FRAME_FOLDER_FPS", "FrameFolderDecoder", "frame_files", "probe_frame_folder"]

#: The nominal frame rate of a folder of frames (frame i lasts from i to i + 1 seconds).
FRAME_FOLDER_FPS = 1.0
_NUMBER = re.compile(r"(\d+)")


def _order(name: str) -> tuple:
    """Sort key: the name split into text and numbers (``shot_10`` after ``shot_9``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _NUMBER.split(name) if part)


@lru_cache(maxsize=256)  # per process (each DataLoader worker lists a folder once, not once per item)
def _listing(folder: str, mtime_ns: int) -> tuple[str, ...]:
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
    return tuple(sorted(names, key=_order))


def frame_files(folder: str | os.PathLike) -> list[str]:
    """The image files of ``folder`` in frame order (sorted by the numbers in their names); frame ``i`` of
    the folder-as-video is ``frame_files(folder)[i]``. A folder that does not exist is a VideoDecodeError."""
    folder = str(folder)
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        raise VideoDecodeError(folder, "frame folder does not exist") from None
    return [os.path.join(folder, name) for name in _listing(folder, mtime)]


def probe_frame_folder(folder: str | os.PathLike) -> VideoInfo:
    """One frame per image of ``folder`` at :data:`FRAME_FOLDER_FPS`; the size of its first image."""
    files = frame_files(folder)
    if not files:
        raise VideoDecodeError(str(folder), f"frame folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    first = probe_image(files[0])
    return VideoInfo(duration=len(files) / FRAME_FOLDER_FPS, fps=FRAME_FOLDER_FPS, num_frames=len(files),
                     width=first.width, height=first.height, has_audio=False, video_codec=f"frames/{first.video_codec}",
                     num_keyframes=len(files), keyframe_interval=1.0, frames_counted=True)


class FrameFolderDecoder:
    """Decodes frames of a folder of images (the :class:`~vidssl.data.decoders.base.Decoder` interface):
    frame ``i`` is the ``i``-th image of :func:`frame_files`. Keyword arguments of the video backends are
    accepted and ignored (Pillow decodes on the calling thread)."""

    name = "frames"

    def __init__(self, **_ignored):
        self._image = ImageDecoder()

    def decode(
        self,
        path: str | os.PathLike,
        start: float = 0.0,
        end: float | None = None,
        *,
        fps: float | None = None,
        stride: int | None = None,
        short_side: int | None = None,
        audio_rate: int | None = None,
        frame_indices: np.ndarray | None = None,
    ) -> Clip:
        """Frames ``[start, end)`` seconds of the folder (``frame_indices``: only those, counted from the
        first frame of the span), uint8 ``T×H×W×3`` with the short side resized to ``short_side``."""
        folder = str(path)
        files = frame_files(folder)
        first = int(round(start * FRAME_FOLDER_FPS))
        last = len(files) if end is None else min(len(files), int(np.ceil(end * FRAME_FOLDER_FPS - 1e-9)))
        wanted = np.arange(first, last) if frame_indices is None else first + np.asarray(frame_indices, dtype=np.int64)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= len(files)):
            raise VideoDecodeError(folder, f"frames {wanted.min()}..{wanted.max()} asked for, the folder has {len(files)}")
        frames = [self._image.decode(files[i], short_side=short_side).frames[0] for i in wanted]
        sizes = {tuple(f.shape) for f in frames}
        if len(sizes) > 1:
            raise VideoDecodeError(folder, f"frames of different sizes {sorted(sizes)} in one clip; extract the "
                                           "frames at one size (e.g. `vidssl data shots` writes them at a 240-pixel short side)")
        stacked = torch.stack(frames) if frames else torch.zeros((0, 1, 1, 3), dtype=torch.uint8)
        return Clip(frames=stacked, frame_times=wanted / FRAME_FOLDER_FPS, start=float(start),
                    end=float(last / FRAME_FOLDER_FPS if end is None else end), fps=FRAME_FOLDER_FPS)

    def decode_audio(self, path: str | os.PathLike, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]:
        """A folder of frames has no audio track: ``(None, False)``."""
        return None, False
