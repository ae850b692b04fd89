"""Probe and decode video files: frames of a time span (and its audio) as tensors.

Two backends share one interface (``decode(path, start, end, ...) -> Clip``):

* :class:`PyAVDecoder` (default): FFmpeg through PyAV. Seeks to the keyframe before
  ``start``, decodes with one thread per worker (``thread_type="SLICE"``,
  ``thread_count=1``: DataLoader workers already give parallelism, and per-decoder
  thread pools oversubscribe the cores, measured 1.6x slower in
  ``reference/dependencies.md``), converts and resizes only the kept frames with
  swscale (``VideoFrame.reformat``).
* :class:`TorchCodecDecoder`: torchcodec, when it is installed (optional extra).

Real files are messy, so decoding returns what exists: an audio track cut short is
padded with zeros (``Clip.audio_padded``), an ``InvalidDataError`` mid-stream ends the
span early, header frame counts are ignored in favour of timestamps. A file that
cannot be read at all raises :class:`~vidssl.errors.VideoDecodeError` naming it.

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

from vidssl.errors import UserError, VideoDecodeError

__all__ = [
    "VideoInfo",
    "Clip",
    "Decoder",
    "PyAVDecoder",
    "TorchCodecDecoder",
    "probe",
    "get_decoder",
    "resized_size",
    "DECODERS",
]


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


# Plain dict of backends: name -> class.
DECODERS: dict[str, type] = {"pyav": PyAVDecoder, "torchcodec": TorchCodecDecoder}


def get_decoder(name: str = "pyav", **kwargs) -> Decoder:
    """A decoder backend by name ("pyav" or "torchcodec"); UserError for unknown or missing ones."""
    if name not in DECODERS:
        raise UserError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
    return DECODERS[name](**kwargs)


def probe(path: str | os.PathLike, count_frames: bool = True) -> VideoInfo:
    """Metadata of one file.

    With ``count_frames`` (default) the video packets are demuxed (no decoding, cheap)
    to count frames and keyframes, because header frame counts lie; otherwise the
    header (or duration × fps) is trusted.

    Raises:
        VideoDecodeError: the file does not exist, is empty, is not a video or has no
            video stream.
    """
    import av

    path = str(path)
    container = PyAVDecoder()._open(path)
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        vstream = container.streams.video[0]
        astreams = container.streams.audio
        fps = float(vstream.average_rate or vstream.guessed_rate or 0.0)
        width, height = vstream.codec_context.width, vstream.codec_context.height
        if not fps or not width or not height:
            raise VideoDecodeError(path, "video stream has no frame rate or size")
        header_frames = int(vstream.frames or 0) or None
        if vstream.duration is not None and vstream.time_base:
            header_duration = float(vstream.duration * vstream.time_base)
        elif container.duration is not None:
            header_duration = container.duration / 1e6
        else:
            header_duration = 0.0
        num_frames, counted, keyframes = header_frames or int(round(header_duration * fps)), False, None
        interval = None
        if count_frames:
            count, key_positions = 0, []
            try:
                for packet in container.demux(vstream):
                    if packet.size == 0:  # flush packet
                        continue
                    if packet.is_keyframe:
                        key_positions.append(count)
                    count += 1
            except (av.error.FFmpegError, ValueError):
                pass  # truncated file: count what is there
            num_frames, counted, keyframes = count, True, len(key_positions)
            if len(key_positions) >= 2:  # mean distance between keyframes (decode order)
                interval = (key_positions[-1] - key_positions[0]) / (len(key_positions) - 1)
            elif key_positions:  # one keyframe: the whole file is one group of pictures
                interval = float(count)
        if num_frames <= 0:
            raise VideoDecodeError(path, "video stream has no frames")
        audio = astreams[0] if astreams else None
        return VideoInfo(
            duration=num_frames / fps if counted else (header_duration or num_frames / fps),
            fps=fps,
            num_frames=num_frames,
            width=int(width),
            height=int(height),
            has_audio=audio is not None,
            audio_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            video_codec=vstream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            keyframe_interval=interval,
            num_keyframes=keyframes,
            header_frames=header_frames,
            frames_counted=counted,
        )
    finally:
        container.close()
