"""Shots of a raw movie: PySceneDetect cut detection and MovieNet-style keyframes.

:func:`detect_shots` streams the video through PySceneDetect (PyAV backend; frames are never held
in memory, so a 2-hour movie is fine) with its ``AdaptiveDetector`` (default) or ``ContentDetector``
and returns the shots as :class:`Shot` (first frame, end frame exclusive, and their times).

:func:`write_keyframes` decodes the movie once more, sequentially, and writes MovieNet's three
keyframes per shot — its first, middle and last frame — as ``shot_XXXX_img_{0,1,2}.jpg`` scaled to a
240-pixel short side (MovieNet's "240P"). Frames are chosen by *time* (the shot's start time, its
midpoint, the time of its last frame), so a variable-frame-rate file gets the right pictures.

:func:`process_movie` does both for one movie and writes it in the MovieNet-SSeg layout
(:mod:`vidssl.data.layouts.movienet`); ``vidssl data shots`` runs it over many movies in parallel.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidssl.errors import DataError, VideoDecodeError

__all__ = ["ShotDetectionConfig", "Shot", "detect_shots", "write_keyframes", "process_movie", "movie_id_for",
           "KEYFRAME_SHORT_SIDE"]

log = logging.getLogger(__name__)

KEYFRAME_SHORT_SIDE = 240


@dataclass
class ShotDetectionConfig:
    """PySceneDetect settings. ``threshold`` None keeps the detector's default (adaptive: 3.0 = how many
    times the frame's content change must exceed its neighbours'; content: 27 on HSV deltas).
    ``min_shot_frames``: shortest shot (PySceneDetect's ``min_scene_len``, default 15 frames)."""

    detector: Literal["adaptive", "content"] = "adaptive"
    threshold: float | None = None
    min_shot_frames: int = 15
    min_content_val: float = 15.0  # adaptive only: smallest content change that can be a cut

    def __post_init__(self):
        if self.detector not in ("adaptive", "content"):
            raise DataError(f"shot detector must be 'adaptive' or 'content', got {self.detector!r}")
        if self.min_shot_frames < 1:
            raise DataError(f"min_shot_frames must be >= 1, got {self.min_shot_frames}")
        if self.threshold is not None and not self.threshold > 0:
            raise DataError(f"the detector threshold must be > 0, got {self.threshold}")

    def make(self):
        from scenedetect import AdaptiveDetector, ContentDetector

        if self.detector == "content":
            kwargs = {} if self.threshold is None else {"threshold": self.threshold}
            return ContentDetector(min_scene_len=self.min_shot_frames, **kwargs)
        kwargs = {} if self.threshold is None else {"adaptive_threshold": self.threshold}
        return AdaptiveDetector(min_scene_len=self.min_shot_frames, min_content_val=self.min_content_val, **kwargs)


@dataclass
class Shot:
    """One shot: frames ``[start, end)`` and times ``[start_time, end_time)`` in seconds."""

    start: int
    end: int
    start_time: float
    end_time: float


def detect_shots(video: str | os.PathLike, cfg: ShotDetectionConfig | None = None) -> tuple[list[Shot], float]:
    """Shots of ``video`` and its frame rate. A video without a cut is one shot. Unreadable files raise
    :class:`~vidssl.errors.VideoDecodeError`."""
    import warnings

    from scenedetect import SceneManager, open_video

    cfg = cfg or ShotDetectionConfig()
    path = str(video)
    try:
        stream = open_video(path, backend="pyav")
        manager = SceneManager()
        manager.add_detector(cfg.make())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            manager.detect_scenes(stream, show_progress=False)
            scenes = manager.get_scene_list(start_in_scene=True)
    except Exception as exc:  # PySceneDetect/PyAV raise many types for a broken file
        raise VideoDecodeError(path, f"shot detection failed: {exc}") from None
    fps = float(stream.frame_rate)
    shots = [Shot(int(a.frame_num), int(b.frame_num), float(a.seconds), float(b.seconds)) for a, b in scenes]
    shots = [s for s in shots if s.end > s.start]
    if not shots:
        raise VideoDecodeError(path, "no frames could be decoded")
    return shots, fps


def _keyframe_times(shot: Shot, fps: float) -> list[float]:
    """First frame, middle and last frame of a shot, as times (MovieNet's 3 keyframes)."""
    last = max(shot.start_time, shot.end_time - 1.0 / fps)
    return [shot.start_time, (shot.start_time + last) / 2, last]


def write_keyframes(video: str | os.PathLike, shots: list[Shot], fps: float, out_dir: str | os.PathLike,
                    short_side: int = KEYFRAME_SHORT_SIDE) -> list[list[str]]:
    """Write ``out_dir/shot_XXXX_img_K.jpg`` (K = 0, 1, 2) for every shot; returns the paths per shot.

    One sequential decode; each wanted time takes the first frame at or after it (the last decoded
    frame when the stream ends early)."""
    import av
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = sorted((t, shot, k) for shot, s in enumerate(shots) for k, t in enumerate(_keyframe_times(s, fps)))
    paths = [[""] * 3 for _ in shots]
    position = 0
    last_image = None
    half_frame = 0.5 / fps

    def save(image: np.ndarray, shot: int, k: int) -> None:
        path = out_dir / f"shot_{shot:04d}_img_{k}.jpg"
        tmp = path.with_name(f".{path.name}.tmp.jpg")
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise DataError(f"cannot write {path}")
        os.replace(tmp, path)
        paths[shot][k] = str(path)

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if position >= len(wanted):
                    break
                time = float(frame.time) if frame.time is not None else 0.0
                if time + half_frame < wanted[position][0]:
                    continue
                h, w = frame.height, frame.width
                scale = short_side / min(h, w)
                size = (max(1, round(w * scale)), max(1, round(h * scale))) if scale < 1 else (w, h)
                last_image = frame.to_ndarray(format="bgr24", width=size[0], height=size[1])
                while position < len(wanted) and time + half_frame >= wanted[position][0]:
                    save(last_image, wanted[position][1], wanted[position][2])
                    position += 1
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoDecodeError(str(video), f"keyframe decoding failed: {exc}") from None
    if last_image is None:
        raise VideoDecodeError(str(video), "no frame decoded for the keyframes")
    while position < len(wanted):  # times past the last decodable frame: the last frame
        save(last_image, wanted[position][1], wanted[position][2])
        position += 1
    return paths


def movie_id_for(path: str | os.PathLike) -> str:
    """A movie id from a file name: its stem with anything but letters, digits, ``-``, ``_`` and ``.`` replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem) or "movie"


def process_movie(video: str | os.PathLike, out: str | os.PathLike, cfg: ShotDetectionConfig | None = None,
                  movie_id: str | None = None) -> dict:
    """Detect the shots of one movie and write it in the MovieNet-SSeg layout under ``out``:
    ``240P_frames/<vid>/…``, ``scene318/shot_movie318/<vid>.txt`` (``start end kf0 kf1 kf2``, end frame
    inclusive) and, last (it marks the movie done), ``shots/<vid>.json`` (every shot with its frames and
    times, the fps and the source file's size and mtime). Returns that JSON's content."""
    from vidssl.io import atomic_write

    cfg = cfg or ShotDetectionConfig()
    video = Path(video).resolve()
    vid = movie_id or movie_id_for(video)
    out = Path(out)
    shots, fps = detect_shots(video, cfg)
    write_keyframes(video, shots, fps, out / "240P_frames" / vid)
    lines = []
    for s in shots:
        kf = [min(s.end - 1, max(s.start, int(round(t * fps)))) for t in _keyframe_times(s, fps)]
        lines.append(f"{s.start} {s.end - 1} {kf[0]} {kf[1]} {kf[2]}\n")
    table = out / "scene318" / "shot_movie318" / f"{vid}.txt"
    table.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(table, lambda tmp: tmp.write_text("".join(lines)), 0, "a shot table")
    stat = video.stat()
    record = {"video_id": vid, "source": str(video), "size": stat.st_size, "mtime": stat.st_mtime, "fps": fps,
              "detector": asdict(cfg), "shots": [asdict(s) for s in shots]}
    text = json.dumps(record, indent=1)
    atomic_write(out / "shots" / f"{vid}.json", lambda tmp: tmp.write_text(text), len(text), "a shot list")
    return record
