"""Still images (JPEG, PNG, …) read through Pillow, behind the same interface as the video backends.

A still image is handled as a one-frame video so that it goes through the one data path (DESIGN.md
principle 1) unchanged: :func:`probe_image` gives a :class:`~vidssl.data.decoders.base.VideoInfo`
with ``num_frames=1`` at a nominal 1 fps (so every plan samples frame 0), the probed width and height,
no audio, and the file's real format as ``video_codec``; :class:`ImageDecoder` returns that frame as a
:class:`~vidssl.data.decoders.base.Clip` (uint8 ``1×H×W×3``, RGB), resized at decode time to the short
side the dataset asks for, like the video decoders do with swscale.

Why Pillow: its ``Image.open`` reads only the header (about 30 µs per ImageNet JPEG here, so indexing
1.28 M images takes well under a minute of probing), it sniffs the real format whatever the file is
named (ImageNet-1K has a PNG and CMYK JPEGs named ``.JPEG``), and it decodes JPEGs at a reduced DCT
scale (``draft``) when the wanted size is at most half the stored one, which is several times faster
on large photos. Pixels are read as stored: no EXIF rotation (as torchvision's ``ImageFolder`` loader
reads them); alpha is dropped (``convert("RGB")``).

Failing loudly: a file Pillow cannot identify, an empty or missing file, a truncated or corrupt one
(Pillow's default ``LOAD_TRUNCATED_IMAGES=False`` makes a cut-short JPEG raise instead of filling it
with grey), and images with 16-bit or float pixels (``convert("RGB")`` would clip them to white), all
raise :class:`~vidssl.errors.VideoDecodeError` naming the file; the dataset then skips and reports it
like a corrupt video.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from vidssl.data.decoders.base import Clip, VideoInfo, resized_size
from vidssl.errors import VideoDecodeError

__all__ = ["IMAGE_EXTENSIONS", "IMAGE_FPS", "ImageDecoder", "probe_image"]

#: File name endings read as still images (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: The nominal frame rate of a still image (one frame lasting one second).
IMAGE_FPS = 1.0
# Pillow modes holding 8-bit samples that convert("RGB") maps faithfully.
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})


def _open(path: str):
    """The Pillow image of ``path`` (header read only), or :class:`VideoDecodeError` saying why not."""
    from PIL import Image

    if not os.path.isfile(path):
        raise VideoDecodeError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        image = Image.open(path)
    except Exception as exc:  # only Pillow runs here; any failure means this file cannot be read
        raise VideoDecodeError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    if image.mode not in _EIGHT_BIT_MODES:
        image.close()
        raise VideoDecodeError(path, f"pixel mode {image.mode} (16-bit or float samples) is not read; "
                                     "convert the image to 8-bit RGB")
    return image


def probe_image(path: str | os.PathLike) -> VideoInfo:
    """Header facts of one image as a one-frame :class:`VideoInfo` (size, format; nothing decoded)."""
    path = str(path)
    image = _open(path)
    try:
        width, height = image.size
        codec = (image.format or "image").lower()
    finally:
        image.close()
    if width < 1 or height < 1:
        raise VideoDecodeError(path, f"image has no pixels ({width}x{height})")
    return VideoInfo(duration=1.0 / IMAGE_FPS, fps=IMAGE_FPS, num_frames=1, width=width, height=height,
                     has_audio=False, video_codec=codec, num_keyframes=1, keyframe_interval=1.0, frames_counted=True)


class ImageDecoder:
    """Decodes one still image as a one-frame :class:`Clip` (the :class:`~vidssl.data.decoders.base.Decoder`
    interface). Keyword arguments of the video backends (``thread_count`` …) are accepted and ignored:
    Pillow decodes on the calling thread, one image per DataLoader worker at a time."""

    name = "image"

    def __init__(self, **_ignored):
        pass

    def decode(
        self,
        path: str | os.PathLike,
        start: float = 0.0,
        end: float = 1.0 / IMAGE_FPS,
        *,
        fps: float | None = None,
        stride: int | None = None,
        short_side: int | None = None,
        audio_rate: int | None = None,
        frame_indices: np.ndarray | None = None,
    ) -> Clip:
        """The image as uint8 ``1×H×W×3`` (RGB), its short side resized to ``short_side`` (aspect kept,
        bilinear with Pillow's antialiasing when shrinking; None keeps the stored size). ``frame_indices``
        may only ask for frame 0 (the plans of a still image ask for nothing else)."""
        path = str(path)
        if frame_indices is not None and np.any(np.asarray(frame_indices) != 0):
            raise ValueError(f"{path} is a still image: only frame 0 exists, asked for {np.asarray(frame_indices).tolist()}")
        from PIL import Image

        image = _open(path)
        try:
            width, height = image.size
            new_h, new_w = resized_size(height, width, short_side)
            try:
                if (new_h, new_w) != (height, width):
                    image.draft("RGB", (new_w, new_h))  # JPEG only: decode at the smallest DCT scale >= the target
                rgb = image.convert("RGB")
                if rgb.size != (new_w, new_h):
                    rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
                array = np.array(rgb, dtype=np.uint8, copy=True)
            except Exception as exc:  # only Pillow runs here: truncated or corrupt data
                raise VideoDecodeError(path, f"image data is corrupt ({type(exc).__name__}: {exc})") from None
        finally:
            image.close()
        frames = torch.from_numpy(array).unsqueeze(0)  # 1×H×W×3
        return Clip(frames=frames, frame_times=np.zeros(1), start=0.0, end=1.0 / IMAGE_FPS, fps=IMAGE_FPS)

    def decode_audio(self, path: str | os.PathLike, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]:
        """A still image has no audio track: ``(None, False)``."""
        return None, False
