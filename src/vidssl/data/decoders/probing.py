"""Probe one file: stream facts, counted frames and keyframes (through PyAV, no decoding)."""

from __future__ import annotations

import os

from vidssl.data.decoders.base import VideoInfo
from vidssl.data.decoders.pyav_decoder import PyAVDecoder
from vidssl.errors import VideoDecodeError


def probe(path: str | os.PathLike, count_frames: bool = True) -> VideoInfo:
    """Metadata of one file.

    With ``count_frames`` (default) the video packets are demuxed (no decoding, cheap)
    to count frames and keyframes, because header frame counts lie; otherwise the
    header (or duration × fps) is trusted.

    Raises:
        VideoDecodeError: the file does not exist, is empty, is not a video or has no
            video stream, or is a still image with a video file name (a PNG renamed ``.mp4``
            would otherwise pass as a one-frame video).
    """
    import av

    path = str(path)
    container = PyAVDecoder()._open(path)
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        vstream = container.streams.video[0]
        fmt = container.format.name or ""
        if fmt == "image2" or fmt.endswith("_pipe"):  # an image demuxer: this is a picture
            from vidssl.data.index import VIDEO_EXTENSIONS

            if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
                raise VideoDecodeError(path, f"a still image ({vstream.codec_context.name}) named like a video, not a video")
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
