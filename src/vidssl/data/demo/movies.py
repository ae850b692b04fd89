"""The "movie" variant of the embedded dataset (scene segmentation): scenes of shots, one
long MP4 per movie, MovieNet-SSeg-style keyframes and BaSSL's ndjson annotations."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidssl.data.demo.dataset import (
    FORMAT_VERSION,
    _check_size,
    _limit_threads,
    _prepare_root,
    _run_tasks,
    _write_marker,
)
from vidssl.data.demo.render import (
    CLASS_NAMES,
    FPS,
    MOTIONS,
    _contrasting_colour,
    _make_background,
    _random_digit,
    _uniform,
    render_audio,
    render_frames,
    write_mp4,
)


#: Bumped when the movies' pixels change (a folder written by another version is regenerated).
#: 2: full-contrast backgrounds, per-shot zoom and lighting, no zoom motions, so that every cut is
#: visible (shot F1 0.69-0.80 before).
MOVIE_VERSION = 2

# --------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class MovieSize:
    """What to render for one named size of the movie (scene segmentation) demo.

    ``setups_per_scene`` None: every shot of a scene is a new camera angle on the scene's own
    background, so a scene boundary shows between two neighbouring shots. A range (``dialogue``
    sizes): a scene has that many *setups* — a camera angle on its own background, a lighting and
    a "character" (one digit, colour and handwriting) — and its shots cut between them, never twice
    the same in a row, as shot/reverse-shot dialogue does. Neighbouring shots then always differ,
    inside a scene as across a boundary; what marks a scene is the set of setups that recur in it,
    which only the context of several shots shows.
    """

    num_movies: tuple[int, int, int]  # train, val, test movies
    scenes_per_movie: tuple[int, int]  # inclusive range
    shots_per_scene: tuple[int, int]  # inclusive range
    shot_seconds: tuple[float, float]
    resolution: int
    audio_rate: int
    setups_per_scene: tuple[int, int] | None = None  # inclusive range; None: a new angle every shot


MOVIE_SIZES: dict[str, MovieSize] = {
    "tiny": MovieSize((2, 1, 1), (5, 7), (1, 4), (0.6, 1.2), 64, 16000),
    "default": MovieSize((6, 2, 2), (12, 18), (2, 5), (1.0, 2.4), 96, 16000),
    "large": MovieSize((20, 5, 5), (20, 30), (2, 6), (1.0, 4.0), 128, 48000),
    "dialogue": MovieSize((6, 2, 2), (10, 14), (4, 7), (1.0, 2.4), 96, 16000, setups_per_scene=(2, 3)),
    "dialogue_large": MovieSize((20, 5, 5), (16, 24), (4, 8), (1.0, 3.0), 128, 48000, setups_per_scene=(2, 3)),
}


# --------------------------------------------------------------------------------------
# the movie demo (scene segmentation; MovieNet-SSeg / BaSSL format)


@dataclass(frozen=True)
class _MovieJob:
    root: str
    movie_index: int
    movie_id: str
    seed: int
    size: MovieSize


def movie_id_of(index: int) -> str:
    """IMDb-like id of the ``index``-th demo movie (``tt0000001`` …)."""
    return f"tt{index + 1:07d}"


#: The motions of the movies' shots: the embedded classes but the two zooms, whose sawtooth size
#: resets (a large digit replaced by a small one from one frame to the next) are cuts to any
#: shot detector.
MOVIE_MOTIONS = [name for name in CLASS_NAMES if name not in ("ZoomIn", "ZoomOut")]


def plan_movie(seed: int, movie_index: int, spec: MovieSize) -> list[dict]:
    """Shots of one movie: ``[{"scene", "start", "end", "motion", "digit"}, …]`` (frames, end exclusive);
    with ``spec.setups_per_scene`` each shot also has its ``"setup"`` (numbered through the movie; one
    digit per setup)."""
    rng = np.random.default_rng([seed, 3, movie_index])
    shots, frame, setups = [], 0, 0
    for scene in range(int(rng.integers(spec.scenes_per_movie[0], spec.scenes_per_movie[1] + 1))):
        count = int(rng.integers(spec.shots_per_scene[0], spec.shots_per_scene[1] + 1))
        if spec.setups_per_scene is not None:
            wanted = int(rng.integers(spec.setups_per_scene[0], spec.setups_per_scene[1] + 1))
            digits = [int(d) for d in rng.integers(10, size=max(1, min(wanted, count)))]
            order = [0]  # shot/reverse-shot: the next shot is any other setup of the scene
            for _ in range(count - 1):
                order.append((order[-1] + 1 + int(rng.integers(len(digits) - 1))) % len(digits) if len(digits) > 1 else 0)
        for index in range(count):
            length = int(round(_uniform(rng, spec.shot_seconds) * FPS))
            shot = {"scene": scene, "start": frame, "end": frame + length,
                    "motion": MOVIE_MOTIONS[int(rng.integers(len(MOVIE_MOTIONS)))]}
            if spec.setups_per_scene is None:
                shot["digit"] = int(rng.integers(10))
            else:
                shot.update(setup=setups + order[index], digit=digits[order[index]])
            shots.append(shot)
            frame += length
        if spec.setups_per_scene is not None:
            setups += len(digits)
    return shots


def _render_movie(task: _MovieJob) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Frames (T×H×W×3 uint8), audio and shot plan of one movie.

    A scene has one style (a background twice the frame size, a drone pitch); each shot
    in it frames a different part of that full-contrast background (a new "camera angle":
    position and zoom, 0.8 to 1.25 frames wide) under slightly different lighting (a
    brightness gain 10-20 % away from the previous shot's), with its own digit, colour and
    motion. Shots change inside a scene, as a cut in a film does, but the style only changes
    between scenes. (Version 1 panned over a half-contrast texture under one light: the
    detector missed many of those cuts, and the zoom motions' size resets looked like cuts.)
    """
    import cv2

    spec = task.size
    width = spec.resolution
    shots = plan_movie(task.seed, task.movie_index, spec)
    scene_count = shots[-1]["scene"] + 1
    if spec.setups_per_scene is not None:
        return _render_dialogue_movie(task, shots, scene_count)
    scene_rngs = [np.random.default_rng([task.seed, 4, task.movie_index, s]) for s in range(scene_count)]
    # full-contrast backgrounds (the action demo halves it): a new camera angle on a soft, half-contrast
    # texture barely changes the frame, and its cuts were invisible to a shot detector
    scenes = [(_make_background(r, width, canvas=2 * width, contrast=1.0), float(r.uniform(70, 180))) for r in scene_rngs]
    frames, audio = [], []
    gain = 1.0
    for index, shot in enumerate(shots):
        rng = np.random.default_rng([task.seed, 5, task.movie_index, index])
        background, drone = scenes[shot["scene"]]
        side = int(round(width * _uniform(rng, (0.8, 1.25))))
        x0, y0 = rng.integers(0, 2 * width - side + 1, size=2)
        view = cv2.resize(background.image[y0 : y0 + side, x0 : x0 + side], (width, width), interpolation=cv2.INTER_AREA)
        # the new shot's lighting: 10-20 % brighter or darker than the last one, within 0.6-1.5
        step = _uniform(rng, (0.1, 0.2))
        gain = gain * (1 + step) if gain * (1 + step) <= 1.5 and (gain * (1 - step) < 0.6 or rng.random() < 0.5) \
            else gain * (1 - step)
        view = np.clip(view * gain, 0, 255).astype(np.float32)
        num_frames = shot["end"] - shot["start"]
        trajectory = MOTIONS[shot["motion"]](rng, num_frames, width)
        _, sprite = _random_digit(rng, shot["digit"])
        colour = _contrasting_colour(rng, np.clip(background.base_colour * gain, 0, 255))
        frames.append(render_frames(trajectory, sprite, colour, view))
        audio.append(render_audio(rng, trajectory, shot["digit"], width, spec.audio_rate, drone_hz=drone))
    return np.concatenate(frames), np.concatenate(audio), shots


def _render_dialogue_movie(task: _MovieJob, shots: list[dict], scene_count: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Frames, audio and shots of a ``dialogue`` movie (see :class:`MovieSize`): each setup is a fixed
    camera angle (position, zoom 0.8-1.25 frames) on its own full-contrast background, under its own
    lighting (gain 0.7-1.3), with its own character (digit sample and colour); a shot of a setup differs
    from another shot of it only by the character's motion. The audio drone stays per scene."""
    import cv2

    spec = task.size
    width = spec.resolution
    setups = {}
    for shot in shots:
        if shot["setup"] in setups:
            continue
        rng = np.random.default_rng([task.seed, 6, task.movie_index, shot["setup"]])
        background = _make_background(rng, width, canvas=2 * width, contrast=1.0)
        side = int(round(width * _uniform(rng, (0.8, 1.25))))
        x0, y0 = rng.integers(0, 2 * width - side + 1, size=2)
        gain = _uniform(rng, (0.7, 1.3))
        view = cv2.resize(background.image[y0 : y0 + side, x0 : x0 + side], (width, width), interpolation=cv2.INTER_AREA)
        view = np.clip(view * gain, 0, 255).astype(np.float32)
        _, sprite = _random_digit(rng, shot["digit"])
        colour = _contrasting_colour(rng, np.clip(background.base_colour * gain, 0, 255))
        setups[shot["setup"]] = (view, sprite, colour)
    drones = [float(np.random.default_rng([task.seed, 4, task.movie_index, s]).uniform(70, 180)) for s in range(scene_count)]
    frames, audio = [], []
    for index, shot in enumerate(shots):
        rng = np.random.default_rng([task.seed, 5, task.movie_index, index])
        view, sprite, colour = setups[shot["setup"]]
        trajectory = MOTIONS[shot["motion"]](rng, shot["end"] - shot["start"], width)
        frames.append(render_frames(trajectory, sprite, colour, view))
        audio.append(render_audio(rng, trajectory, shot["digit"], width, spec.audio_rate, drone_hz=drones[shot["scene"]]))
    return np.concatenate(frames), np.concatenate(audio), shots


def _encode_movie(task: _MovieJob) -> dict:
    import cv2

    _limit_threads()
    frames, audio, shots = _render_movie(task)
    root = Path(task.root)
    write_mp4(root / "videos" / f"{task.movie_id}.mp4", frames, audio, task.size.audio_rate)
    keyframe_dir = root / "240P_frames" / task.movie_id
    keyframe_dir.mkdir(parents=True, exist_ok=True)
    for shot_index, shot in enumerate(shots):
        # MovieNet's three keyframes per shot: its first, middle and last frame
        shot["keyframes"] = [shot["start"], (shot["start"] + shot["end"] - 1) // 2, shot["end"] - 1]
        for k, frame in enumerate(shot["keyframes"]):
            path = keyframe_dir / f"shot_{shot_index:04d}_img_{k}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(frames[frame], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return {"movie_id": task.movie_id, "num_frames": len(frames), "shots": shots}


MOVIE_SPLITS = ("train", "val", "test")


def generate_movie_demo(
    out: str | os.PathLike, size: str = "default", seed: int = 0, workers: int | None = None
) -> Path:
    """Render the "movie" variant (scenes of shots) into ``out`` and return its path.

    Writes ``videos/<movie_id>.mp4`` (one long video with audio per movie),
    ``240P_frames/<movie_id>/shot_XXXX_img_{0,1,2}.jpg`` (first/middle/last frame of each
    shot), ``anno/anno.{pretrain,train,val,test,trainvaltest}.ndjson`` and
    ``anno/vid2idx.json`` (BaSSL's format), ``scene318/shot_movie318/<movie_id>.txt``
    (``start end kf0 kf1 kf2`` frame numbers per shot, end inclusive as in MovieNet),
    ``movies.json`` (every shot with its scene) and ``README.txt``.

    Example:
        >>> root = generate_movie_demo("/tmp/vidssl_movies", size="tiny")  # doctest: +SKIP
        >>> (root / "anno" / "anno.train.ndjson").exists()  # doctest: +SKIP
        True
    """
    _check_size(size, MOVIE_SIZES)
    spec = MOVIE_SIZES[size]
    root = Path(out)
    meta = {"kind": "movie-demo", "size": size, "seed": int(seed), "version": FORMAT_VERSION,
            "movie_version": MOVIE_VERSION}
    if _prepare_root(root, meta):
        return root
    entries = ["videos", "240P_frames", "anno", "scene318", "movies.json", "README.txt"]
    _write_marker(root, meta, entries, complete=False)
    split_of = [split for split, count in zip(MOVIE_SPLITS, spec.num_movies) for _ in range(count)]
    tasks = [_MovieJob(str(root), i, movie_id_of(i), int(seed), spec) for i in range(len(split_of))]
    movies = _run_tasks(_encode_movie, tasks, workers)
    for movie, split in zip(movies, split_of):
        movie["split"] = split
        movie["fps"] = FPS
    _write_movie_annotations(root, movies)
    _write_movie_readme(root, spec, size, seed, movies)
    _write_marker(root, meta, entries, complete=True, num_videos=len(movies))
    return root


def _shot_records(movie: dict, global_video_id: int, first_global_scene: int) -> list[dict]:
    shots = movie["shots"]
    records = []
    for index, shot in enumerate(shots):
        is_last = index == len(shots) - 1
        records.append({
            "video_id": movie["movie_id"],
            "shot_id": f"{index:04d}",
            "num_shot": len(shots),
            # 1: a scene boundary follows this shot. The last shot of a movie gets 0
            # (BaSSL's files also hold -1, which its fine-tuning turns into 1 with abs()).
            "boundary_label": int(not is_last and shots[index + 1]["scene"] != shot["scene"]),
            "global_video_id": global_video_id,
            "invideo_scene_id": shot["scene"],
            "global_scene_id": first_global_scene + shot["scene"],
        })
    return records


def _write_movie_annotations(root: Path, movies: list[dict]) -> None:
    anno = root / "anno"
    anno.mkdir(parents=True, exist_ok=True)
    vid2idx = {movie["movie_id"]: index for index, movie in enumerate(movies)}
    (anno / "vid2idx.json").write_text(json.dumps(vid2idx, indent=1))
    per_split: dict[str, list[dict]] = {split: [] for split in MOVIE_SPLITS}
    global_scene = 0
    for movie in movies:
        per_split[movie["split"]].extend(_shot_records(movie, vid2idx[movie["movie_id"]], global_scene))
        global_scene += movie["shots"][-1]["scene"] + 1
    # pretraining uses the training movies only, without labels (-1 = unlabelled)
    pretrain = [dict(record, boundary_label=-1) for record in per_split["train"]]
    files = {"pretrain": pretrain, **per_split, "trainvaltest": [r for s in MOVIE_SPLITS for r in per_split[s]]}
    for name, records in files.items():
        (anno / f"anno.{name}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records))
    shot_dir = root / "scene318" / "shot_movie318"
    shot_dir.mkdir(parents=True, exist_ok=True)
    for movie in movies:
        lines = [f"{s['start']} {s['end'] - 1} {' '.join(map(str, s['keyframes']))}\n" for s in movie["shots"]]
        (shot_dir / f"{movie['movie_id']}.txt").write_text("".join(lines))
    (root / "movies.json").write_text(json.dumps(movies, indent=1))


def _write_movie_readme(root: Path, spec: MovieSize, size: str, seed: int, movies: list[dict]) -> None:
    num_shots = sum(len(m["shots"]) for m in movies)
    split_counts = ", ".join(f"{count} {split}" for split, count in zip(MOVIE_SPLITS, spec.num_movies))
    lines = [
        "vidssl embedded movie dataset (scene segmentation; generated by `vidssl data demo --movie`)",
        "",
        f"size {size}, seed {seed}: {len(movies)} movies ({split_counts}),",
        f"{num_shots} shots, {spec.resolution}x{spec.resolution} px, {FPS} fps, "
        f"AAC mono audio at {spec.audio_rate} Hz.",
        "",
        *(["A movie is a sequence of scenes; a scene is 1+ consecutive shots sharing one style",
           "(background colour/texture/clutter and a low drone in the audio). Each shot frames a",
           "different part of the scene's background at its own zoom and lighting and shows one digit",
           "with one motion (the action demo's classes but the zooms); cuts between shots are hard cuts."]
          if spec.setups_per_scene is None else
          ["A movie is a sequence of scenes. A scene has 2-3 setups (a camera angle on its own",
           "background, a lighting, one character: a digit of one colour and handwriting) and a low",
           "drone in the audio; its shots cut between the setups, never twice the same in a row",
           "(shot/reverse-shot), each with its own motion. Neighbouring shots always differ: a scene",
           "is the set of setups that recur in it. movies.json gives each shot's setup."]),
        "",
        "videos/<movie_id>.mp4                      one long video per movie",
        "240P_frames/<movie_id>/shot_XXXX_img_K.jpg first (K=0), middle (1), last (2) frame of each shot",
        "anno/anno.{train,val,test,trainvaltest}.ndjson  one JSON per shot: video_id, shot_id, num_shot,",
        "    boundary_label (1 = a scene boundary follows the shot), global_video_id, invideo_scene_id,",
        "    global_scene_id",
        "anno/anno.pretrain.ndjson                  the training movies' shots, boundary_label -1 (unlabelled)",
        "anno/vid2idx.json                          movie id -> integer",
        "scene318/shot_movie318/<movie_id>.txt      per shot: start_frame end_frame(incl.) kf0 kf1 kf2",
        "movies.json                                every movie's split and shots (start, end excl., scene)",
    ]
    (root / "README.txt").write_text("\n".join(lines) + "\n")
