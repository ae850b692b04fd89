"""What ``vidssl data check`` verifies in each file: that the whole video decodes, and what its
audio track really holds.

Probing (``vidssl data index``) reads headers and packets only, so a file whose data breaks half-way
passes it and fails later in training or evaluation. :func:`check_file` decodes the whole video
stream (``fast``: only the first second) and the audio track with the decoder the datasets use, and
classifies the file into exactly one of ``ok``, ``broken`` (probes fine, does not decode) — besides
``unreadable`` (the probe itself failed) and ``missing`` (listed, not on disk), which the manifest
already knows — so the counts of a check always add up to the number of files indexed.

Still images (``media="image"``, a manifest of the ``images`` layout) are decoded whole with the
``image`` decoder the datasets use for them (a truncated JPEG passes probing, which reads the header
only, and is ``broken`` here); they have no audio to check. Folders of keyframes (``media="frames"``, the
``movienet_keyframes`` layout) are decoded image by image with the ``frames`` decoder.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["FileCheck", "check_file", "check_files", "AUDIO_UNDECODABLE", "AUDIO_SHORT"]

AUDIO_UNDECODABLE = "audio track present but undecodable"
AUDIO_SHORT = "audio track shorter than the video"


@dataclass
class FileCheck:
    """The verdict on one probed file: ``error`` (why it does not decode; None when it does),
    ``frames_decoded`` and ``audio`` (None, :data:`AUDIO_UNDECODABLE` or :data:`AUDIO_SHORT` + details)."""

    path: str
    error: str | None = None
    frames_decoded: int = 0
    audio: str | None = None
    notes: list[str] = field(default_factory=list)


def _decode_video(path: str, seconds: float | None) -> tuple[int, str | None]:
    """Frames decoded from the start (up to ``seconds``, None = all) and the stream error that stopped it."""
    import av

    from vidssl.data.decoders.pyav_decoder import PyAVDecoder

    count = 0
    container = PyAVDecoder()._open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        limit = None if seconds is None else int(seconds * float(stream.average_rate or 25)) + 1
        try:
            for _ in container.decode(stream):
                count += 1
                if limit is not None and count >= limit:
                    break
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, ValueError) as exc:
            return count, f"stream error after {count} frames: {exc}"
    finally:
        container.close()
    return count, None


def check_file(path: str, info: Any, fast: bool = False, audio_rate: int = 16000, media: str = "video") -> FileCheck:
    """Decode one probed file (``info``: its :class:`~vidssl.data.decoders.base.VideoInfo`). ``media``
    (:attr:`~vidssl.data.index.Manifest.media`): an ``"image"`` is decoded whole, even with ``fast`` (it is one
    frame); a folder of ``"frames"`` image by image (with ``fast``, its first image only)."""
    from vidssl.data.decode import get_decoder
    from vidssl.errors import VideoDecodeError

    result = FileCheck(path)
    if media == "frames":
        try:
            clip = get_decoder("frames").decode(path, 0.0, 1.0 if fast else None)
            result.frames_decoded = int(clip.frames.shape[0])
        except VideoDecodeError as exc:
            result.error = exc.reason
        return result
    if media == "image":
        try:
            get_decoder("image").decode(path)
            result.frames_decoded = 1
        except VideoDecodeError as exc:
            result.error = exc.reason
        return result
    try:
        result.frames_decoded, error = _decode_video(path, 1.0 if fast else None)
    except VideoDecodeError as exc:
        result.error = exc.reason
        return result
    if error is not None:
        result.error = f"{error} (of {info.num_frames})"
        return result
    if not fast and result.frames_decoded < info.num_frames - 1:
        result.notes.append(f"{result.frames_decoded} of {info.num_frames} frames decode")
    if info.has_audio:
        seconds = min(1.0, info.duration) if fast else info.duration
        try:
            audio, padded = get_decoder("pyav").decode_audio(path, 0.0, seconds, audio_rate)
        except VideoDecodeError as exc:
            audio, padded = None, True
            result.notes.append(exc.reason)
        if audio is None or (padded and not bool(audio.abs().max() > 0)):
            result.audio = AUDIO_UNDECODABLE
        elif padded:
            nonzero = audio.abs().gt(0).nonzero()
            real = (int(nonzero[-1]) + 1) / audio_rate if nonzero.numel() else 0.0
            result.audio = f"{AUDIO_SHORT} (about {real:.2f} of {seconds:.2f} s)"
    return result


def check_files(items: list[tuple[str, Any]], fast: bool = False, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None, media: str = "video") -> list[FileCheck]:
    """:func:`check_file` over ``(path, info)`` pairs, in threads (FFmpeg and Pillow decode outside the GIL);
    ``media``: what the files are, as for :func:`check_file`."""
    import os

    workers = workers or min(8, os.cpu_count() or 1)
    results: list[FileCheck] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, result in enumerate(pool.map(lambda item: check_file(item[0], item[1], fast, media=media), items), 1):
            results.append(result)
            if progress is not None:
                progress(done, len(items))
    return results
