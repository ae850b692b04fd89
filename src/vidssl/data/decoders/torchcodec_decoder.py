"""The torchcodec backend (``pip install 'vidssl[torchcodec]'`` + a system FFmpeg), same interface as PyAV's.

torchcodec (PyTorch's decoding library) links the FFmpeg *shared libraries of the system*
(libavcodec 4-8: ``apt-get install ffmpeg`` on Debian/Ubuntu, ``conda install ffmpeg``), unlike
PyAV, whose wheel bundles its own FFmpeg. What it adds: the resize runs inside the decoder
(``torchcodec.transforms.Resize``, bilinear with antialiasing, on the decoder's own frame buffer),
and frames come straight out as tensors.

How each call maps onto torchcodec:

* ``frame_indices`` (the dataset's decode-once path): ``get_frames_at(first + frame_indices)``,
  ``first`` being the index of the first frame at or after ``start`` at the stream's average rate.
  torchcodec decodes forward from the keyframe before the first index and converts only the
  frames asked for. Positions past the last frame repeat that frame, as with PyAV.
* ``fps`` / ``stride`` / neither: ``get_frames_played_in_range(start, end)``, then the same
  selection as PyAV (:func:`~vidssl.data.decoders.base._select_times`).

``seek_mode="approximate"`` (default) trusts the header's frame count and rate and avoids a scan
of the file at every open. Real files whose header promises more frames than exist
(``reference/dependencies.md``: torchcodec then raises "no more frames left to decode") are
retried once in ``"exact"`` mode, which scans the file and counts the frames really there; the
clip is then marked ``truncated`` and frames past the end repeat the last one, as PyAV does.

Metadata of each file (size, rate, frame count) is cached per decoder instance (so per
DataLoader worker), so a decode opens the file once.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch

from vidssl.data.decoders.base import Clip, _select_times, resized_size
from vidssl.errors import UserError, VideoDecodeError

INSTALL_HINT = ("install it with `pip install 'vidssl[torchcodec]'` (or `pip install torchcodec`) and a system FFmpeg "
                "(Debian/Ubuntu: `apt-get install ffmpeg`; conda: `conda install ffmpeg`), or use decoder='pyav'")


def _import_torchcodec():
    """torchcodec's decoders, or a :class:`UserError` saying how to get them (missing package or FFmpeg libraries)."""
    try:
        import torchcodec.decoders as decoders
    except ImportError as exc:
        raise UserError(f"the torchcodec decoder is not installed: {INSTALL_HINT}") from exc
    except (OSError, RuntimeError) as exc:  # the package is there, the FFmpeg shared libraries are not
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"torchcodec is installed but cannot load FFmpeg's libraries ({first}): {INSTALL_HINT}") from exc
    return decoders


class TorchCodecDecoder:
    """torchcodec backend with the :class:`~vidssl.data.decoders.pyav_decoder.PyAVDecoder` interface.

    Args:
        num_threads: FFmpeg threads per decoder; 1 inside DataLoader workers (the workers are the parallelism).
        seek_mode: "approximate" (no scan at open; retried exactly when the header lies) or "exact".
        cache_size: files whose metadata is kept (per process).
        device: "cpu", or "cuda" for NVDEC decoding (frames then come back on the GPU: use it in the main
            process, not in DataLoader workers).
    """

    name = "torchcodec"

    def __init__(self, num_threads: int = 1, seek_mode: str = "approximate", cache_size: int = 4096,
                 device: str = "cpu"):
        if seek_mode not in ("approximate", "exact"):
            raise UserError(f"torchcodec seek_mode must be 'approximate' or 'exact', got {seek_mode!r}")
        _import_torchcodec()
        self.num_threads = num_threads
        self.seek_mode = seek_mode
        self.cache_size = cache_size
        self.device = device
        self._meta: OrderedDict = OrderedDict()  # path -> (metadata, exact?)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_meta"] = OrderedDict()
        return state

    def _open(self, path: str, short_side: int | None, exact: bool = False):
        """A ``VideoDecoder`` of ``path`` resizing to ``short_side`` inside the decoder, and its metadata."""
        decoders = _import_torchcodec()
        if not os.path.isfile(path):
            raise VideoDecodeError(path, "file does not exist")
        if os.path.getsize(path) == 0:
            raise VideoDecodeError(path, "file is empty (0 bytes)")
        mode = "exact" if exact else self.seek_mode
        cached = self._meta.get((path, mode))
        transforms = None
        if cached is not None and short_side is not None:
            h, w = resized_size(cached.height, cached.width, short_side)
            if (h, w) != (cached.height, cached.width):
                from torchcodec.transforms import Resize

                transforms = [Resize((h, w))]
        try:
            decoder = decoders.VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=self.num_threads,
                                            seek_mode=mode, transforms=transforms, device=self.device)
        except Exception as exc:  # noqa: BLE001 (torchcodec raises RuntimeError/ValueError for unreadable files)
            raise VideoDecodeError(path, f"not a readable video (torchcodec: {_first_line(exc)})") from exc
        meta = decoder.metadata
        if not meta.width or not meta.height or not meta.average_fps:
            raise VideoDecodeError(path, "video stream has no frame rate or size")
        if cached is None:
            self._meta[(path, mode)] = meta
            while len(self._meta) > self.cache_size:
                self._meta.popitem(last=False)
            if short_side is not None and resized_size(meta.height, meta.width, short_side) != (meta.height, meta.width):
                return self._open(path, short_side, exact)  # now with the resize inside the decoder
        else:
            self._meta.move_to_end((path, mode))
        return decoder, meta

    def decode(self, path, start, end, *, fps=None, stride=None, short_side=None, audio_rate=None,
               frame_indices=None) -> Clip:
        """Same contract as :meth:`PyAVDecoder.decode`; the resize runs inside the decoder."""
        path = str(path)
        if end <= start:
            raise ValueError(f"empty span [{start}, {end})")
        if fps is not None and stride is not None:
            raise ValueError("give fps or stride, not both")
        truncated = False
        try:
            frames, times, src_fps = self._video(path, start, end, fps, stride, short_side, frame_indices, exact=False)
        except _NoMoreFrames:
            truncated = True  # the header promised frames that are not there: count them and retry
            try:
                frames, times, src_fps = self._video(path, start, end, fps, stride, short_side, frame_indices, exact=True)
            except _NoMoreFrames as exc:
                raise VideoDecodeError(path, f"stream error: {exc}") from None
        clip = Clip(frames=frames, frame_times=times, start=start, end=end,
                    fps=float(fps) if fps else src_fps / (stride or 1), truncated=truncated)
        if audio_rate is not None:
            clip.audio, clip.audio_padded = self.decode_audio(path, start, end, audio_rate)
            clip.has_audio = clip.audio is not None
            clip.audio_rate = audio_rate if clip.has_audio else None
        return clip

    def _video(self, path, start, end, fps, stride, short_side, frame_indices, exact):
        decoder, meta = self._open(path, short_side, exact)
        src_fps = float(meta.average_fps)
        origin = float(meta.begin_stream_seconds or 0.0)
        count = int(meta.num_frames or 0)
        if frame_indices is not None:
            first = int(np.ceil(start * src_fps - 0.5))  # the first frame at or after start (half a frame of jitter)
            if count and first >= count:
                if not exact:
                    raise _NoMoreFrames(f"no frames in [{start:.3f}, {end:.3f}) s")
                raise VideoDecodeError(path, f"no frames in [{start:.3f}, {end:.3f}) s")
            # positions past the span's (or the file's) last frame repeat that frame, as PyAV does
            last = max(first, int(np.ceil(end * src_fps - 0.5)) - 1)
            if count:
                last = min(last, count - 1)
            wanted = np.minimum(first + np.asarray(frame_indices, dtype=np.int64), last)
            unique, inverse = np.unique(wanted, return_inverse=True)
            batch = self._call(path, decoder.get_frames_at, unique.tolist())
            frames = batch.data[torch.from_numpy(inverse.reshape(-1))]
            times = batch.pts_seconds.double().numpy()[inverse.reshape(-1)] - origin
            return frames, times, src_fps
        stop = origin + end
        if meta.end_stream_seconds is not None:
            stop = min(stop, float(meta.end_stream_seconds))
        if stop <= origin + start:
            h, w = resized_size(meta.height, meta.width, short_side)
            return torch.zeros((0, h, w, 3), dtype=torch.uint8), np.zeros(0), src_fps
        batch = self._call(path, decoder.get_frames_played_in_range, origin + start, stop)
        times = batch.pts_seconds.double().numpy() - origin
        keep = _select_times(times, start, end, src_fps, fps, stride)
        frames = batch.data[torch.from_numpy(keep)] if len(times) else batch.data
        return frames, times[keep] if len(times) else times, src_fps

    @staticmethod
    def _call(path, method, *args):
        try:
            return method(*args)
        except (RuntimeError, IndexError, ValueError) as exc:
            text = _first_line(exc)
            if "no more frames" in text or "Invalid frame index" in text or "must be less than" in text:
                raise _NoMoreFrames(text) from None
            raise VideoDecodeError(path, f"stream error (torchcodec: {text})") from exc

    def decode_audio(self, path, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]:
        """Mono float32 ``N`` audio of ``[start, end)`` (zero-padded, second value True then); ``(None, False)``
        when the file has no audio stream."""
        decoders = _import_torchcodec()
        num = max(0, int(round((end - start) * rate)))
        try:
            decoder = decoders.AudioDecoder(str(path), sample_rate=rate, num_channels=1)
        except Exception:  # noqa: BLE001 (torchcodec raises a RuntimeError when there is no audio stream)
            return None, False
        out = torch.zeros(num)
        begin = float(decoder.metadata.begin_stream_seconds or 0.0)
        try:
            samples = decoder.get_samples_played_in_range(start + begin, end + begin)
        except Exception:  # noqa: BLE001 (span outside a track cut short, or a corrupt packet)
            return out, num > 0
        data = samples.data.mean(0).float()
        offset = int(round((start + begin - float(samples.pts_seconds)) * rate))
        src_lo, dst_lo = max(offset, 0), max(-offset, 0)
        count = max(0, min(num - dst_lo, data.numel() - src_lo))
        out[dst_lo : dst_lo + count] = data[src_lo : src_lo + count]
        padded = count < num - max(1, int(0.002 * rate))  # tolerate ~2 ms of resampler edge, as PyAV's path
        return out.clamp_(-1.0, 1.0), padded


class _NoMoreFrames(Exception):
    """torchcodec ran out of frames the header promised (handled by a retry in exact mode)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
