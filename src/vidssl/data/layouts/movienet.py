"""``movienet`` layout: MovieNet-SSeg as BaSSL ships it (reference §1.2), and what ``vidssl data shots``
and the embedded movie demo write.

::

    ROOT/anno/anno.{pretrain,train,val,test}.ndjson   one JSON object per shot (format: docs/bassl.md)
    ROOT/anno/vid2idx.json                            movie id -> int (optional; BaSSL's metric needs it)
    ROOT/anno/fps.json                                movie id -> frame rate (optional; see below)
    ROOT/scene318/shot_movie318/<vid>.txt             per shot: start_frame end_frame(incl.) [keyframes…]
    ROOT/240P_frames/<vid>/shot_XXXX_img_{0,1,2}.jpg  three keyframes per shot (first, middle, last frame)
    ROOT/videos/<vid>.mp4                             the movie itself (optional)

:func:`read_movienet` reads everything into :class:`MovieEntry` objects (shots from the frame table,
labels from the ndjson, keyframe paths) and reports what is missing — a movie without a frame table,
a shot id past its table, keyframes missing on disk (movienet-tools issue 20: some movies have
annotated shots without images) — by path, never crashing. The scene protocol
(:mod:`vidssl.eval.scenes`) uses the keyframes; the layout reader :func:`read_movienet_layout`
(``LAYOUTS["movienet"]``) makes one :class:`~vidssl.data.index.VideoRecord` per movie that has a
video file, with ``annotations["shots"]`` / ``["shot_labels"]`` for the shot-window plan (movies with
keyframes only cannot be decoded as video and are listed as missing); ``LAYOUTS["movienet_keyframes"]``
(:func:`read_movienet_keyframes_layout`) makes one per movie keyframe folder instead, each folder read as
one video of its keyframes — MovieNet's own release, which BaSSL pretrains on. Auto-detection picks
``movienet`` when ``videos/`` holds movies, ``movienet_keyframes`` otherwise.

``boundary_label``: 1 = a scene ends after this shot, 0 = it does not, -1 = unknown (BaSSL's
pretraining file; its fine-tuning turned -1 into 1 with ``abs()``). vidssl keeps -1 as unknown: such
shots are neither trained on nor evaluated. A movie in two of train/val/test is an error (leakage);
movies only in ``anno.pretrain.ndjson`` belong to ``train``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vidssl.data.index import VIDEO_EXTENSIONS, VideoRecord
from vidssl.errors import DataError

__all__ = ["MovieEntry", "read_movienet", "read_movienet_layout", "read_movienet_keyframes_layout", "is_movienet",
           "has_movie_files", "keyframe_path", "LABELLED_SPLITS"]

log = logging.getLogger(__name__)

LABELLED_SPLITS = ("train", "val", "test")
KEYFRAMES_PER_SHOT = 3


def keyframe_path(root: Path, video_id: str, shot: int, k: int) -> Path:
    """``ROOT/240P_frames/<vid>/shot_XXXX_img_K.jpg``."""
    return Path(root) / "240P_frames" / video_id / f"shot_{shot:04d}_img_{k}.jpg"


@dataclass
class MovieEntry:
    """One movie of a MovieNet-SSeg tree.

    ``shots``: ``[start, end)`` frame pairs (end exclusive) of every shot in the frame table;
    ``labels``: one of 1/0/-1 per shot (-1 also for shots the ndjson does not list);
    ``annotated``: the shot ids the ndjson lists; ``keyframes``: per shot the paths of its keyframes
    present on disk; ``video``: the movie file if there is one; ``fps``: from ``anno/fps.json`` if given.
    """

    video_id: str
    split: str
    shots: list[list[int]]
    labels: list[int]
    annotated: list[int]
    keyframes: list[list[str]] = field(default_factory=list)
    video: str | None = None
    fps: float | None = None


def _anno_dir(root: Path) -> Path:
    return root / "anno" if (root / "anno").is_dir() else root


def is_movienet(root: Path) -> bool:
    anno = _anno_dir(Path(root))
    return any((anno / f"anno.{name}.ndjson").is_file() for name in ("pretrain", *LABELLED_SPLITS, "trainvaltest"))


def _read_ndjson(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["video_id"] = str(row["video_id"])
            row["shot_id"] = int(row["shot_id"])
            row["boundary_label"] = int(row.get("boundary_label", -1))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} line {number}: not a shot record with video_id, shot_id (and boundary_label) "
                            f"({exc}); fix or remove that line") from None
        if row["boundary_label"] not in (-1, 0, 1):
            raise DataError(f"{path} line {number}: boundary_label {row['boundary_label']} is not 1, 0 or -1")
        rows.append(row)
    return rows


def _read_shot_table(path: Path) -> list[list[int]]:
    shots = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            start, end = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise DataError(f"{path} line {number}: expected 'start_frame end_frame ...', got {line[:60]!r}") from None
        if end < start:
            raise DataError(f"{path} line {number}: end frame {end} before start frame {start}")
        shots.append([start, end + 1])  # the table's end frame is inclusive
    return shots


def read_movienet(root, report: list[str] | None = None) -> list[MovieEntry]:
    """Every annotated movie of a MovieNet-SSeg tree (see the module docstring); problems go to ``report``
    (a list of one-line messages naming the path) and to the log."""
    root = Path(root)
    anno = _anno_dir(root)
    problems = report if report is not None else []
    files = {name: anno / f"anno.{name}.ndjson" for name in ("pretrain", *LABELLED_SPLITS)}
    if not any(p.is_file() for p in files.values()) and (anno / "anno.trainvaltest.ndjson").is_file():
        files = {"train": anno / "anno.trainvaltest.ndjson"}
    split_of: dict[str, str] = {}
    rows_of: dict[str, dict[int, int]] = {}
    # labelled splits first: a movie's split is where its labels are; pretraining-only movies are "train"
    for name in [n for n in files if n != "pretrain"] + ["pretrain"]:
        path = files.get(name)
        if path is None or not path.is_file():
            continue
        for row in _read_ndjson(path):
            vid = row["video_id"]
            if name == "pretrain":
                split_of.setdefault(vid, "train")
                rows_of.setdefault(vid, {}).setdefault(row["shot_id"], row["boundary_label"])
                continue
            if split_of.get(vid, name) != name:
                raise DataError(f"movie {vid} is in both anno.{split_of[vid]}.ndjson and {path.name}; "
                                "a movie must be in one split only")
            split_of[vid] = name
            rows_of.setdefault(vid, {})[row["shot_id"]] = row["boundary_label"]
    if not split_of:
        raise DataError(f"no shot records in {anno}/anno.*.ndjson; see docs/bassl.md for the format")
    fps_file = anno / "fps.json"
    fps = json.loads(fps_file.read_text()) if fps_file.is_file() else {}
    movies = []
    for vid in sorted(split_of):
        table = root / "scene318" / "shot_movie318" / f"{vid}.txt"
        if not table.is_file():
            problems.append(f"{table}: no frame table for movie {vid}; the movie is skipped")
            continue
        shots = _read_shot_table(table)
        labels = [-1] * len(shots)
        annotated = []
        for shot_id, label in sorted(rows_of.get(vid, {}).items()):
            if not 0 <= shot_id < len(shots):
                problems.append(f"{table}: movie {vid} shot {shot_id} is annotated but the table has {len(shots)} shots; "
                                "the shot is skipped")
                continue
            labels[shot_id] = label
            annotated.append(shot_id)
        keyframes = []
        missing = []
        for shot in range(len(shots)):
            paths = [keyframe_path(root, vid, shot, k) for k in range(KEYFRAMES_PER_SHOT)]
            keyframes.append([str(p) for p in paths if p.is_file()])
            missing += [str(p) for p in paths if not p.is_file() and shot in set(annotated)]
        if missing:
            problems.append(f"movie {vid}: {len(missing)} keyframe(s) of annotated shots missing (first: {missing[0]}); "
                            "shots without any keyframe are skipped")
        video = next((str(p) for ext in VIDEO_EXTENSIONS for p in [root / "videos" / f"{vid}{ext}"] if p.is_file()), None)
        movies.append(MovieEntry(vid, split_of[vid], shots, labels, annotated, keyframes, video,
                                 float(fps[vid]) if vid in fps else None))
    for line in problems:
        log.warning(line)
    return movies


def read_movienet_layout(root: Path):
    """``LAYOUTS["movienet"]``: one record per movie with a video file (shots and labels as annotations)."""
    movies = read_movienet(root)
    records, missing = [], []
    for movie in movies:
        if movie.video is None:
            missing.append(f"videos/{movie.video_id} (keyframes only: usable by the scene protocol, not as video)")
            continue
        records.append(VideoRecord(Path(movie.video).relative_to(root).as_posix(), splits={1: movie.split},
                                   annotations={"shots": movie.shots, "shot_labels": movie.labels,
                                                "video_id": movie.video_id}))
    if not records:
        raise DataError(f"no movie of {root} has a video file under videos/ (MovieNet keyframes only): read its "
                        "keyframes with format=movienet_keyframes (as BaSSL does), or put the movies under videos/")
    return records, [], missing


_KEYFRAME_NAME = re.compile(r"shot_(\d+)_img_(\d+)\.jpe?g$", re.IGNORECASE)


def read_movienet_keyframes_layout(root: Path):
    """``LAYOUTS["movienet_keyframes"]``: one record per movie whose keyframe folder ``240P_frames/<vid>`` exists,
    read as one video (:mod:`vidssl.data.decoders.frames`): frame ``i`` is the folder's ``i``-th image in
    name order, and shot ``s`` spans the frames of its keyframes (``annotations["shots"]``), so a shot-window
    plan's random frame of a shot is one of its keyframes at random — what BaSSL's pretraining reads. Shots
    without any keyframe on disk are left out of the movie's sequence, as in the scene protocol
    (``annotations["shot_ids"]`` keeps the frame table's ids of those kept)."""
    from vidssl.data.decoders.frames import frame_files

    root = Path(root)
    records, missing = [], []
    for movie in read_movienet(root):
        folder = root / "240P_frames" / movie.video_id
        if not folder.is_dir():
            missing.append(f"240P_frames/{movie.video_id} (no keyframe folder)")
            continue
        positions: dict[int, list[int]] = {}
        for position, path in enumerate(frame_files(folder)):
            match = _KEYFRAME_NAME.search(os.path.basename(path))
            if match:
                positions.setdefault(int(match.group(1)), []).append(position)
        shots, labels, shot_ids = [], [], []
        for shot in range(len(movie.shots)):
            found = positions.get(shot)
            if found:  # a shot's keyframes are consecutive in name order: shot_XXXX_img_0, _1, _2
                shots.append([min(found), max(found) + 1])
                labels.append(movie.labels[shot])
                shot_ids.append(shot)
        if not shots:
            missing.append(f"240P_frames/{movie.video_id} (no shot_XXXX_img_K.jpg keyframe of its frame table's shots)")
            continue
        records.append(VideoRecord(folder.relative_to(root).as_posix(), splits={1: movie.split},
                                   annotations={"shots": shots, "shot_labels": labels, "shot_ids": shot_ids,
                                                "video_id": movie.video_id}))
    if not records:
        raise DataError(f"no movie of {root} has keyframes under 240P_frames/<movie>/ (shot_XXXX_img_K.jpg); "
                        "write them with `vidssl data shots`, or read the movies with format=movienet")
    return records, [], missing


def has_movie_files(root: Path) -> bool:
    """Whether ``root/videos`` holds at least one movie file (else a MovieNet tree is read as keyframes)."""
    videos = Path(root) / "videos"
    return videos.is_dir() and any(p.suffix.lower() in VIDEO_EXTENSIONS for p in videos.iterdir())
