"""Probe and decode video files: frames of a time span (and its audio) as tensors.

Two backends share one interface (``decode(path, start, end, ...) -> Clip``):

* :class:`PyAVDecoder` (default): FFmpeg through PyAV. Seeks to the keyframe before
  ``start``, decodes with one thread per worker (``thread_type="SLICE"``,
  ``thread_count=1``: DataLoader workers already give parallelism, and per-decoder
  thread pools oversubscribe the cores, measured 1.6x slower in
  ``reference/dependencies.md``), converts and resizes only the kept frames with
  swscale (``VideoFrame.reformat``).
* :class:`TorchCodecDecoder`: torchcodec, when it is installed (optional extra).
* :class:`ImageDecoder` (``"image"``): still images through Pillow, as one-frame clips
  (:func:`probe_image` probes them); datasets of the ``images`` layout use it whatever
  video backend is configured.
* :class:`FrameFolderDecoder` (``"frames"``): a folder of frames as one video (MovieNet's
  keyframes; :func:`probe_frame_folder` probes it); the ``movienet_keyframes`` layout uses it.

Real files are messy, so decoding returns what exists: an audio track cut short is
padded with zeros (``Clip.audio_padded``), an ``InvalidDataError`` mid-stream ends the
span early, header frame counts are ignored in favour of timestamps. A file that
cannot be read at all raises :class:`~vidssl.errors.VideoDecodeError` naming it.

Times are seconds from the start of the video stream (the stream's ``start_time`` is
subtracted, so files whose first timestamp is not 0 behave like the others).

The code lives in :mod:`vidssl.data.decoders` (shared types, one module per backend,
probing); this module is the interface to import from, and holds the backend registry.
"""

from __future__ import annotations

from vidssl.data.decoders.base import Clip, Decoder, VideoInfo, _select_times, resized_size
from vidssl.data.decoders.frames import FrameFolderDecoder, frame_files, probe_frame_folder
from vidssl.data.decoders.image import IMAGE_EXTENSIONS, ImageDecoder, probe_image
from vidssl.data.decoders.probing import probe
from vidssl.data.decoders.pyav_decoder import PyAVDecoder
from vidssl.data.decoders.torchcodec_decoder import TorchCodecDecoder
from vidssl.errors import UserError

__all__ = [
    "VideoInfo",
    "Clip",
    "Decoder",
    "PyAVDecoder",
    "TorchCodecDecoder",
    "ImageDecoder",
    "FrameFolderDecoder",
    "probe",
    "probe_image",
    "probe_frame_folder",
    "frame_files",
    "IMAGE_EXTENSIONS",
    "get_decoder",
    "resized_size",
    "DECODERS",
]


# Plain dict of backends: name -> class.
DECODERS: dict[str, type] = {"pyav": PyAVDecoder, "torchcodec": TorchCodecDecoder, "image": ImageDecoder,
                             "frames": FrameFolderDecoder}


def get_decoder(name: str = "pyav", **kwargs) -> Decoder:
    """A decoder backend by name ("pyav", "torchcodec", "image" for still images, "frames" for a folder of
    frames); UserError for unknown or missing ones."""
    if name not in DECODERS:
        raise UserError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
    return DECODERS[name](**kwargs)
