"""The optional torchcodec backend (``pip install torchcodec``), same interface as PyAV's."""

from __future__ import annotations

import numpy as np
import torch

from vidssl.data.decoders.base import Clip, _select_times, resized_size
from vidssl.errors import UserError, VideoDecodeError


class TorchCodecDecoder:
    """torchcodec backend with the :class:`PyAVDecoder` interface (needs ``pip install torchcodec``).

    Note (``reference/dependencies.md``): torchcodec was seen to fail on headers whose
    frame count is one too high and to be slow on files with very few keyframes;
    PyAV stays the default.
    """

    name = "torchcodec"

    def __init__(self, num_threads: int = 1, seek_mode: str = "approximate"):
        try:
            import torchcodec.decoders  # noqa: F401
        except ImportError as exc:
            raise UserError(
                "the torchcodec decoder is not installed; `pip install torchcodec` (it needs a system FFmpeg) or use decoder='pyav'"
            ) from exc
        self.num_threads = num_threads
        self.seek_mode = seek_mode

    def decode(self, path, start, end, *, fps=None, stride=None, short_side=None, audio_rate=None,
               frame_indices=None) -> Clip:
        """Same contract as :meth:`PyAVDecoder.decode` (resizing is done with torch here)."""
        from torchcodec.decoders import VideoDecoder

        path = str(path)
        if end <= start:
            raise ValueError(f"empty span [{start}, {end})")
        try:
            decoder = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=self.num_threads, seek_mode=self.seek_mode)
            src_fps = float(decoder.metadata.average_fps or 25.0)
            last = decoder.metadata.duration_seconds or end
            batch = decoder.get_frames_played_in_range(start, min(end, last))
        except Exception as exc:  # torchcodec raises RuntimeError/ValueError for unreadable files
            raise VideoDecodeError(path, f"torchcodec: {exc}") from exc
        times = batch.pts_seconds.double().numpy()
        if frame_indices is not None:
            if not len(times):
                raise VideoDecodeError(path, f"no frames in [{start:.3f}, {end:.3f}) s")
            keep = np.minimum(np.asarray(frame_indices, dtype=np.int64), len(times) - 1)
        else:
            keep = _select_times(times, start, end, src_fps, fps, stride)
        frames = batch.data[torch.from_numpy(keep)] if len(times) else batch.data
        if short_side is not None and len(frames):
            h, w = resized_size(frames.shape[1], frames.shape[2], short_side)
            x = frames.permute(0, 3, 1, 2).float()
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        clip = Clip(frames=frames, frame_times=times[keep] if len(times) else times, start=start, end=end,
                    fps=float(fps) if fps else src_fps / (stride or 1))
        if audio_rate is not None:
            clip.audio, clip.audio_padded = self.decode_audio(path, start, end, audio_rate)
            clip.has_audio = clip.audio is not None
            clip.audio_rate = audio_rate if clip.has_audio else None
        return clip

    def decode_audio(self, path, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]:
        """Mono float32 ``N`` audio of ``[start, end)`` (zero-padded); None when the file has no audio."""
        from torchcodec.decoders import AudioDecoder

        num = int(round((end - start) * rate))
        try:
            decoder = AudioDecoder(str(path), sample_rate=rate, num_channels=1)
        except Exception:  # no audio stream
            return None, False
        out = torch.zeros(num)
        try:
            samples = decoder.get_samples_played_in_range(start, end)
        except Exception:  # span outside the (short) audio track
            return out, num > 0
        data = samples.data.mean(0).float()
        offset = int(round((start - float(samples.pts_seconds)) * rate))
        data = data[max(offset, 0):]
        count = min(num, data.numel())
        out[:count] = data[:count]
        return out, count < num
