"""A movie's scene timeline from per-shot boundary probabilities, and the files ``vidssl segment`` writes.

:func:`segment_movie` runs the whole path on one movie file: shots (PySceneDetect) → keyframes → shot
features (the scene model's encoder) → boundary probabilities (its CRN + head) → scenes. The writers
turn the scenes into a JSON and a CSV timeline, a CMX 3600 EDL and an FFmpeg chapters file a video
editor or player imports, a contact sheet (one row of keyframes per scene) and, on request, one clip
per scene cut without re-encoding (stream copy; each clip starts at the keyframe at or before its
scene's start, as ``ffmpeg -c copy`` does).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidssl.errors import DataError, VideoDecodeError

__all__ = ["Scene", "scenes_from_boundaries", "write_timeline_json", "write_timeline_csv", "write_edl",
           "write_chapters", "write_contact_sheet", "export_clips", "segment_movie", "timecode"]


@dataclass
class Scene:
    """One scene: shots ``first_shot..last_shot`` (inclusive), frames ``[start_frame, end_frame)``, seconds."""

    index: int
    first_shot: int
    last_shot: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float

    @property
    def shots(self) -> list[int]:
        return list(range(self.first_shot, self.last_shot + 1))


def scenes_from_boundaries(boundary_after: np.ndarray, shots: list[dict]) -> list[Scene]:
    """Scenes of a movie: a scene ends after every shot flagged in ``boundary_after`` (bool ``N``) and at the
    movie's last shot (the timeline covers the whole movie). ``shots``: dicts with ``start``, ``end``
    (frames, end exclusive), ``start_time``, ``end_time``."""
    if len(boundary_after) != len(shots):
        raise DataError(f"{len(boundary_after)} boundary flags for {len(shots)} shots")
    scenes, first = [], 0
    for index in range(len(shots)):
        if boundary_after[index] or index == len(shots) - 1:
            a, b = shots[first], shots[index]
            scenes.append(Scene(len(scenes), first, index, a["start"], b["end"], a["start_time"], b["end_time"]))
            first = index + 1
    return scenes


def timecode(seconds: float, fps: float) -> str:
    """``HH:MM:SS:FF`` at ``fps`` (non-drop-frame; rounded frame rate)."""
    rate = max(1, round(fps))
    frames = int(round(seconds * fps))
    ff, total = frames % rate, frames // rate
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}:{ff:02d}"


def write_timeline_json(path: Path, movie: str, fps: float, scenes: list[Scene], shots: list[dict],
                        probs: np.ndarray, threshold: float) -> None:
    data = {"movie": movie, "fps": fps, "threshold": threshold,
            "scenes": [{**asdict(s), "shots": s.shots} for s in scenes],
            "shots": [{**shot, "boundary_probability": float(p)} for shot, p in zip(shots, probs)]}
    path.write_text(json.dumps(data, indent=1))


def write_timeline_csv(path: Path, scenes: list[Scene]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scene", "start_time", "end_time", "start_frame", "end_frame", "first_shot", "last_shot",
                         "num_shots"])
        for s in scenes:
            writer.writerow([s.index, f"{s.start_time:.3f}", f"{s.end_time:.3f}", s.start_frame, s.end_frame,
                             s.first_shot, s.last_shot, len(s.shots)])


def write_edl(path: Path, movie: str, fps: float, scenes: list[Scene]) -> None:
    """CMX 3600 EDL: one cut event per scene (source and record timecodes equal), with a locator comment."""
    lines = [f"TITLE: {Path(movie).stem} scenes", "FCM: NON-DROP FRAME", ""]
    for s in scenes:
        tc_in, tc_out = timecode(s.start_time, fps), timecode(s.end_time, fps)
        lines.append(f"{s.index + 1:03d}  AX       V     C        {tc_in} {tc_out} {tc_in} {tc_out}")
        lines.append(f"* FROM CLIP NAME: {Path(movie).name}")
        lines.append(f"* COMMENT: scene {s.index + 1} (shots {s.first_shot}-{s.last_shot})")
        lines.append("")
    path.write_text("\n".join(lines))


def write_chapters(path: Path, scenes: list[Scene]) -> None:
    """FFmpeg metadata chapters (``ffmpeg -i movie -i chapters.txt -map_metadata 1 -c copy out.mkv``)."""
    lines = [";FFMETADATA1"]
    for s in scenes:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={int(round(s.start_time * 1000))}",
                  f"END={int(round(s.end_time * 1000))}", f"title=Scene {s.index + 1}"]
    path.write_text("\n".join(lines) + "\n")


def write_contact_sheet(path: Path, scenes: list[Scene], keyframes: list[list[str]], thumb_height: int = 90,
                        max_per_row: int = 12) -> None:
    """PNG: one row per scene, the middle keyframe of each of its shots (up to ``max_per_row``, evenly chosen)."""
    import cv2

    rows = []
    for s in scenes:
        shots = s.shots
        if len(shots) > max_per_row:
            shots = [shots[i] for i in np.linspace(0, len(shots) - 1, max_per_row).round().astype(int)]
        thumbs = []
        for shot in shots:
            paths = keyframes[shot]
            image = cv2.imread(paths[len(paths) // 2]) if paths else None
            if image is None:
                image = np.zeros((thumb_height, thumb_height, 3), np.uint8)
            width = max(1, round(image.shape[1] * thumb_height / image.shape[0]))
            thumbs.append(cv2.resize(image, (width, thumb_height), interpolation=cv2.INTER_AREA))
        label = np.full((thumb_height, 60, 3), 32, np.uint8)
        cv2.putText(label, str(s.index + 1), (8, thumb_height // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
        rows.append(np.concatenate([label, *thumbs], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    if not cv2.imwrite(str(path), sheet):
        raise DataError(f"cannot write {path}")


def export_clips(video: str | os.PathLike, scenes: list[Scene], out_dir: Path) -> list[Path]:
    """One file per scene, packets copied (no re-encoding), video and audio; returns the paths."""
    import av

    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(video).suffix.lower() if Path(video).suffix.lower() in (".mp4", ".mkv", ".mov") else ".mkv"
    written = []
    for s in scenes:
        target = out_dir / f"scene_{s.index + 1:04d}{suffix}"
        tmp = target.with_name(f".{target.name}.tmp{suffix}")
        try:
            with av.open(str(video)) as source, av.open(str(tmp), "w") as sink:
                streams = [st for st in source.streams if st.type in ("video", "audio")]
                mapping = {st.index: sink.add_stream_from_template(st) for st in streams}
                source.seek(int(s.start_time / av.time_base), backward=True, any_frame=False)
                offsets: dict[int, int] = {}
                for packet in source.demux(streams):
                    if packet.dts is None or packet.pts is None:
                        continue
                    t = float(packet.pts * packet.time_base)
                    if t >= s.end_time:
                        if packet.stream.type == "video":
                            break
                        continue
                    offsets.setdefault(packet.stream.index, packet.dts)
                    shift = offsets[packet.stream.index]
                    packet.pts -= shift
                    packet.dts -= shift
                    packet.stream = mapping[packet.stream.index]
                    sink.mux(packet)
            os.replace(tmp, target)
        except (av.error.FFmpegError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise VideoDecodeError(str(video), f"cutting scene {s.index + 1} failed: {exc}") from None
        written.append(target)
    return written


def segment_movie(video: str | os.PathLike, scene_model: str | os.PathLike, out: str | os.PathLike,
                  detection=None, threshold: float | None = None, device: str = "auto", clips: bool = False,
                  progress: bool = True, log_fn: Callable[[str], None] = print) -> dict:
    """Shots → features → boundaries → scene timeline of one movie; writes the files into ``out`` and
    returns a summary (paths, counts)."""
    from vidssl.data.shots import movie_id_for, process_movie
    from vidssl.eval.features import pick_device
    from vidssl.eval.scenes import MovieShots, extract_shot_features, load_scene_model, predict_boundaries

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder, contract, model, meta = load_scene_model(scene_model)
    threshold = meta["threshold"] if threshold is None else threshold
    vid = movie_id_for(video)
    log_fn(f"detecting shots in {video} ...")
    record = process_movie(video, out, detection, vid)
    shots = record["shots"]
    fps = record["fps"]
    keyframes = [[str(out / "240P_frames" / vid / f"shot_{i:04d}_img_{k}.jpg") for k in range(3)]
                 for i in range(len(shots))]
    movie = MovieShots(vid, "test", [[s["start"], s["end"]] for s in shots], [-1] * len(shots), keyframes, fps,
                       str(video))
    dev = pick_device(device)
    features = extract_shot_features(encoder, contract, [movie], dev, progress=progress)[vid]
    probs = predict_boundaries(model.to(dev), features, meta["shots_per_side"], dev)
    scenes = scenes_from_boundaries(probs > threshold, shots)
    paths = {"json": out / f"{vid}.scenes.json", "csv": out / f"{vid}.scenes.csv", "edl": out / f"{vid}.edl",
             "chapters": out / f"{vid}.chapters.txt", "contact_sheet": out / f"{vid}.contact.png"}
    write_timeline_json(paths["json"], str(video), fps, scenes, shots, probs, threshold)
    write_timeline_csv(paths["csv"], scenes)
    write_edl(paths["edl"], str(video), fps, scenes)
    write_chapters(paths["chapters"], scenes)
    write_contact_sheet(paths["contact_sheet"], scenes, keyframes)
    if clips:
        paths["clips"] = out / f"{vid}_scenes"
        export_clips(video, scenes, paths["clips"])
    log_fn(f"{len(shots)} shots, {len(scenes)} scenes: {paths['json']}")
    return {"movie": str(video), "shots": len(shots), "scenes": len(scenes), "fps": fps,
            "files": {k: str(v) for k, v in paths.items()}}
