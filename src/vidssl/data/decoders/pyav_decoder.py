"""The default backend: FFmpeg through PyAV (see :mod:`vidssl.data.decode` for the design notes)."""

from __future__ import annotations

import os

import numpy as np
import torch

from vidssl.data.decoders.base import Clip, _select_times, resized_size
from vidssl.errors import VideoDecodeError


class PyAVDecoder:
    """FFmpeg decoding through PyAV.

    Args:
        thread_type: FFmpeg threading of the video codec ("SLICE", "FRAME", "AUTO").
        thread_count: decoder threads; 1 is right inside DataLoader workers.
        interpolation: swscale interpolation used for the decode-time resize.
    """

    name = "pyav"

    def __init__(self, thread_type: str = "SLICE", thread_count: int = 1, interpolation: str = "BILINEAR"):
        self.thread_type = thread_type
        self.thread_count = thread_count
        self.interpolation = interpolation
        self._reformatter = None  # created per process on first use (not picklable)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reformatter"] = None
        return state

    def _rgb(self, frame, width: int, height: int) -> np.ndarray:
        """One frame as RGB ``H×W×3`` at (height, width).

        A persistent ``VideoReformatter`` keeps its swscale context between frames; the
        one-off ``frame.reformat``/``to_ndarray(format=...)`` rebuilds it every call,
        which measured 8x slower on 64x64 frames. Not thread-safe: one decoder per thread.
        """
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                         interpolation=self.interpolation)
        return rgb.to_ndarray()

    def _open(self, path: str):
        import av

        if not os.path.isfile(path):
            raise VideoDecodeError(path, "file does not exist")
        if os.path.getsize(path) == 0:
            raise VideoDecodeError(path, "file is empty (0 bytes)")
        try:
            return av.open(path, metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise VideoDecodeError(path, f"not a readable video ({exc})") from exc

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
    ) -> Clip:
        """Frames with timestamps in ``[start, end)`` and, if ``audio_rate``, audio of the same span.

        Returns a :class:`Clip` with ``frames`` uint8 ``T×H×W×C``. ``short_side`` resizes at
        decode time (only the kept frames are converted). ``audio_rate=None`` skips audio.
        ``frame_indices`` (vidssl extension used by the dataset's decode-once path): positions
        of the frames to keep within the span, instead of ``fps``/``stride``; every frame is
        decoded but only these are converted to RGB. Positions past the last decodable frame
        repeat that frame (a header that promised more frames than exist).
        """
        path = str(path)
        if end <= start:
            raise ValueError(f"empty span [{start}, {end})")
        container = self._open(path)
        try:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream")
            vstream = container.streams.video[0]
            vstream.thread_type = self.thread_type
            vstream.codec_context.thread_count = self.thread_count
            src_fps = float(vstream.average_rate or vstream.guessed_rate or 25.0)
            if frame_indices is not None:
                wanted = set(np.asarray(frame_indices, dtype=np.int64).tolist())
                want = wanted.__contains__
            elif stride is not None:
                want = lambda position: position % stride == 0  # noqa: E731
            else:
                want = None  # fps resampling needs every timestamp first: keep all frames of the span
            frames, times, truncated = self._decode_video(container, vstream, start, end, src_fps, path, want)
            if not times and truncated:
                raise VideoDecodeError(path, "stream error before any frame of the span could be decoded")
            if frame_indices is not None:
                if not times:
                    raise VideoDecodeError(path, f"no frames in [{start:.3f}, {end:.3f}) s")
                keep = np.minimum(np.asarray(frame_indices, dtype=np.int64), len(times) - 1)
            else:
                keep = _select_times(np.asarray(times, dtype=np.float64), start, end, src_fps, fps, stride)
            tensor = self._to_tensor([frames[i] for i in keep], short_side, vstream)
            clip = Clip(
                frames=tensor,
                frame_times=np.asarray(times, dtype=np.float64)[keep] if len(times) else np.zeros(0),
                start=start,
                end=end,
                fps=float(fps) if fps else src_fps / (stride or 1),
                truncated=truncated,
                has_audio=bool(container.streams.audio),
            )
        finally:
            container.close()
        if audio_rate is not None and clip.has_audio:
            clip.audio, clip.audio_padded = self.decode_audio(path, start, end, audio_rate)
            clip.audio_rate = audio_rate
        return clip

    def _decode_video(self, container, stream, start, end, src_fps, path, want=None):
        """Decode the video frames of the span.

        Returns ``(frames, times, truncated)``: ``times`` of every frame in the span, ``frames``
        a dict position -> decoded frame holding only the positions ``want(position)`` accepts
        (all when ``want`` is None) plus the last frame, so long spans do not pile up in memory.
        """
        import av

        time_base = float(stream.time_base) if stream.time_base else 1.0 / src_fps
        origin = stream.start_time if stream.start_time is not None else 0
        half = 0.5 / src_fps
        frames: dict = {}
        times: list[float] = []
        truncated = False
        for attempt in range(2):
            frames.clear()
            times.clear()
            seek_to = start if attempt == 0 else 0.0
            if seek_to > half:
                try:
                    container.seek(int(origin + seek_to / time_base), stream=stream, backward=True, any_frame=False)
                except av.error.FFmpegError:
                    container.seek(0)
            elif attempt == 1:
                container.seek(0)
            previous, last = None, None
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None:
                        t = (frame.pts - origin) * time_base
                    else:  # no timestamps: assume constant rate after the previous frame
                        t = 0.0 if previous is None else previous + 1.0 / src_fps
                    previous = t
                    if t >= end - half:
                        break
                    if t >= start - half:
                        position = len(times)
                        times.append(t)
                        last = (position, frame)
                        if want is None or want(position):
                            frames[position] = frame
            except av.error.EOFError:
                pass
            except (av.error.FFmpegError, ValueError) as exc:  # e.g. InvalidDataError mid-stream
                truncated = True
                if not times:
                    raise VideoDecodeError(path, f"stream error: {exc}") from exc
            if last is not None:
                frames[last[0]] = last[1]
            # A broken index can land the seek after ``start``; decode from the beginning once.
            overshot = previous is not None and previous > start + half and (not times or times[0] > start + half)
            if attempt == 0 and start > half and overshot:
                continue
            break
        return frames, times, truncated

    def _to_tensor(self, frames, short_side, stream) -> torch.Tensor:
        if not frames:
            h, w = resized_size(stream.codec_context.height or 1, stream.codec_context.width or 1, short_side)
            return torch.zeros((0, h, w, 3), dtype=torch.uint8)
        h, w = resized_size(frames[0].height, frames[0].width, short_side)
        out = np.empty((len(frames), h, w, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            # Every frame goes to the first frame's output size (covers mid-stream size changes).
            out[i] = self._rgb(frame, w, h)
        return torch.from_numpy(out)

    def decode_audio(self, path: str, start: float, end: float, rate: int) -> tuple[torch.Tensor | None, bool]:
        """Mono float32 ``N`` audio of ``[start, end)`` at ``rate``, zero-padded where the track has
        nothing (second value True then); ``(None, False)`` when the file has no audio stream."""
        import av

        num = max(0, int(round((end - start) * rate)))
        out = np.zeros(num, dtype=np.float32)
        container = self._open(str(path))
        chunks: list[np.ndarray] = []
        first_time = None
        try:
            if not container.streams.audio:
                return None, False
            stream = container.streams.audio[0]
            time_base = float(stream.time_base)
            origin = stream.start_time if stream.start_time is not None else 0
            vstreams = container.streams.video
            if vstreams and vstreams[0].start_time is not None:
                # Times are relative to the video stream start so audio and frames line up.
                origin = vstreams[0].start_time * float(vstreams[0].time_base) / time_base
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            if start > 0.05:
                try:
                    container.seek(int(origin + max(0.0, start - 0.05) / time_base), stream=stream, backward=True)
                except av.error.FFmpegError:
                    container.seek(0)
            got = 0
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = (frame.pts - origin) * time_base
                    if t >= end:
                        break
                    for res in resampler.resample(frame):
                        if first_time is None:
                            first_time = t
                        arr = res.to_ndarray().reshape(-1)
                        chunks.append(arr)
                        got += arr.size
                    if first_time is not None and first_time + got / rate >= end:
                        break
            except av.error.EOFError:
                pass
            except (av.error.FFmpegError, ValueError):
                pass  # audio cut short or corrupt: keep what was decoded, pad the rest
            try:
                for res in resampler.resample(None):
                    chunks.append(res.to_ndarray().reshape(-1))
            except (av.error.FFmpegError, ValueError):
                pass
        finally:
            container.close()
        if first_time is None or not chunks:
            return torch.from_numpy(out), num > 0
        samples = np.concatenate(chunks).astype(np.float32, copy=False)
        offset = int(round((start - first_time) * rate))  # position of ``start`` in ``samples``
        src_lo, dst_lo = max(offset, 0), max(-offset, 0)
        count = max(0, min(num - dst_lo, samples.size - src_lo))
        out[dst_lo : dst_lo + count] = samples[src_lo : src_lo + count]
        padded = count < num - max(1, int(0.002 * rate))  # tolerate ~2 ms of resampler edge
        np.clip(out, -1.0, 1.0, out=out)
        return torch.from_numpy(out), padded
