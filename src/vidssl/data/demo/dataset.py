"""The action-recognition demo in the UCF101 layout (:func:`generate_demo`), and the pieces
both generators share: the completion marker, size checks and the parallel task runner."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidssl.data.demo.render import (
    CLASS_DESCRIPTIONS,
    CLASS_NAMES,
    FPS,
    KEYFRAME_INTERVAL,
    MOTIONS,
    Background,
    _contrasting_colour,
    _digits,
    _make_background,
    _random_digit,
    _uniform,
    render_audio,
    render_frames,
    video_codec,
    write_mp4,
)
from vidssl.errors import DataError

MARKER_NAME = ".vidssl_demo.json"
# 2: larger digits, motions twice as fast, half-contrast backgrounds (vidssl.data.demo docstring, "Classes need time")
FORMAT_VERSION = 2


# --------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class DemoSize:
    """How much to render for one named size of the action-recognition demo."""

    num_groups: int  # UCF101-style groups g01..gNN (one background setting each)
    clips_per_group: int  # clips c01..cNN per class and group
    seconds: tuple[float, float]  # clip duration range (uniform, rounded to whole frames)
    resolution: int  # square frames, pixels
    audio_rate: int  # Hz


DEMO_SIZES: dict[str, DemoSize] = {
    # tests: every class, 4 clips per class, generates in a few seconds
    "tiny": DemoSize(num_groups=4, clips_per_group=1, seconds=(2.0, 2.0), resolution=64, audio_rate=16000),
    # the default of the main command: 10 classes × 25 groups × 4 clips = 1000 clips
    "default": DemoSize(num_groups=25, clips_per_group=4, seconds=(2.0, 2.4), resolution=64, audio_rate=16000),
    # GPU runs: 2000 clips of 4-8 s at 128², 48 kHz audio (BraVe's rate)
    "large": DemoSize(num_groups=25, clips_per_group=8, seconds=(4.0, 8.0), resolution=128, audio_rate=48000),
}


# --------------------------------------------------------------------------------------
# the action-recognition demo (UCF101 layout)


@dataclass(frozen=True)
class DemoClip:
    """One clip of the action demo: where it goes and everything its random draws depend on."""

    root: str
    class_index: int
    group: int  # 1-based
    clip: int  # 1-based
    seed: int
    size: DemoSize

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_index]

    @property
    def relpath(self) -> str:
        name = self.class_name
        return f"{name}/v_{name}_g{self.group:02d}_c{self.clip:02d}.mp4"


def _group_background(seed: int, group: int, width: int) -> Background:
    # one background per group, shared by every class: the setting never gives away the class
    return _make_background(np.random.default_rng([seed, 1, group]), width)


def render_clip(task: DemoClip) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames (T×H×W×3 uint8), audio (N float32) and a small description of one demo clip."""
    size = task.size
    width = size.resolution
    rng = np.random.default_rng([task.seed, 2, task.class_index, task.group, task.clip])
    num_frames = int(round(_uniform(rng, size.seconds) * FPS))
    background = _group_background(task.seed, task.group, width)
    trajectory = MOTIONS[task.class_name](rng, num_frames, width)
    digit, sprite = _random_digit(rng)
    colour = _contrasting_colour(rng, background.base_colour)
    frames = render_frames(trajectory, sprite, colour, background.image)
    audio = render_audio(rng, trajectory, digit, width, size.audio_rate)
    info = {"digit": digit, "num_frames": num_frames, "events": trajectory.events.tolist()}
    return frames, audio, info


def _encode_clip(task: DemoClip) -> str:
    _limit_threads()
    frames, audio, _ = render_clip(task)
    write_mp4(Path(task.root) / task.relpath, frames, audio, task.size.audio_rate)
    return task.relpath


def _limit_threads() -> None:
    import cv2

    cv2.setNumThreads(1)


def held_out_groups(num_groups: int, fold: int) -> list[int]:
    """Groups (1-based) held out in ``fold`` (1..3), as UCF101: 7 of 25 groups per fold.

    For other group counts the test share stays 7/25 (at least one group), folds are
    consecutive and disjoint, and groups past the third fold are always in training.
    """
    per_fold = max(1, round(num_groups * 7 / 25))
    if 3 * per_fold > num_groups:
        raise ValueError(f"{num_groups} groups are too few for 3 disjoint test folds")
    return list(range((fold - 1) * per_fold + 1, fold * per_fold + 1))


def _run_tasks(function: Callable, tasks: list, workers: int | None) -> list:
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        _digits()
        return [function(task) for task in tasks]
    # Not "fork": a caller that has already run OpenCV or torch has live thread pools, and a forked
    # child that touches them (cv2.setNumThreads, warpAffine) can wait forever on a lock held by a
    # thread that no longer exists (seen in the test suite). "forkserver" forks from a clean server.
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    with multiprocessing.get_context(method).Pool(workers, initializer=_digits) as pool:
        return pool.map(function, tasks, chunksize=max(1, len(tasks) // (8 * workers)))


def _load_marker(root: Path) -> dict | None:
    marker = root / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}


def _prepare_root(root: Path, expected: dict) -> bool:
    """True if ``root`` already holds the complete output described by ``expected``.

    Otherwise clears what an earlier (different or interrupted) generation wrote and
    returns False. A non-empty folder without our marker is refused: we never delete
    files we did not write.
    """
    marker = _load_marker(root)
    if marker is not None:
        if marker.get("complete") and all(marker.get(key) == value for key, value in expected.items()):
            return True
        for entry in marker.get("entries", []):
            target = root / entry
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        (root / MARKER_NAME).unlink()
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(
            f"{root} already exists and was not written by `vidssl data demo`; "
            "give an empty or new folder with --out"
        )
    return False


def _write_marker(root: Path, meta: dict, entries: list[str], complete: bool, **extra) -> None:
    root.mkdir(parents=True, exist_ok=True)
    content = dict(meta, entries=sorted(entries), complete=complete, **extra)
    tmp = root / (MARKER_NAME + ".part")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, root / MARKER_NAME)


def _check_size(size: str, table: dict) -> None:
    if size not in table:
        raise DataError(f"unknown demo size {size!r}; choose one of {', '.join(table)}")


def generate_demo(out: str | os.PathLike, size: str = "default", seed: int = 0, workers: int | None = None) -> Path:
    """Render the embedded action-recognition dataset into ``out`` (UCF101 layout) and return its path.

    Example:
        >>> root = generate_demo("/tmp/vidssl_demo", size="tiny")  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
        ['BounceFloor', 'BounceSides']

    ``workers`` processes render and encode in parallel (default: all CPUs). Skips all
    work if ``out`` already holds a complete dataset of this size and seed.
    """
    _check_size(size, DEMO_SIZES)
    spec = DEMO_SIZES[size]
    root = Path(out)
    meta = {"kind": "ucf101-demo", "size": size, "seed": int(seed), "version": FORMAT_VERSION}
    from vidssl.data.demo.captions import CAPTIONS_FILE, write_captions

    tasks = _clip_tasks(DemoClip, root, len(CLASS_NAMES), spec, seed)
    if _prepare_root(root, meta):
        if not (root / CAPTIONS_FILE).is_file():  # written before the dataset had captions
            write_captions(root, tasks)
        return root
    entries = [*CLASS_NAMES, "ucfTrainTestlist", "README.txt", CAPTIONS_FILE]
    _write_marker(root, meta, entries, complete=False)
    _run_tasks(_encode_clip, tasks, workers)
    _write_split_files(root / "ucfTrainTestlist", tasks, spec.num_groups)
    write_captions(root, tasks)
    _write_readme(root, spec, size, seed, len(tasks))
    _write_marker(root, meta, entries, complete=True, num_videos=len(tasks))
    return root


def _clip_tasks(clip_type: type, root: Path, num_classes: int, spec: DemoSize, seed: int) -> list:
    """Every clip of an action dataset, class by class, group by group: ``clip_type(root, class, group, clip,
    seed, spec)`` (:class:`DemoClip` or a subclass with other classes)."""
    return [
        clip_type(str(root), class_index, group, clip, int(seed), spec)
        for class_index in range(num_classes)
        for group in range(1, spec.num_groups + 1)
        for clip in range(1, spec.clips_per_group + 1)
    ]


def _write_split_files(folder: Path, tasks: list, num_groups: int,
                       class_names: tuple[str, ...] = CLASS_NAMES) -> None:
    """UCF101's ``classInd.txt`` and the three folds' train/test lists for clips with ``relpath``,
    ``class_index`` and ``group``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(class_names)))
    for fold in (1, 2, 3):
        held_out = set(held_out_groups(num_groups, fold))
        train = [f"{t.relpath} {t.class_index + 1}\n" for t in tasks if t.group not in held_out]
        test = [f"{t.relpath}\n" for t in tasks if t.group in held_out]
        (folder / f"trainlist0{fold}.txt").write_text("".join(train))
        (folder / f"testlist0{fold}.txt").write_text("".join(test))


def _write_readme(root: Path, spec: DemoSize, size: str, seed: int, count: int) -> None:
    lines = [
        "vidssl embedded dataset (generated by `vidssl data demo`)",
        "",
        f"size {size}, seed {seed}: {count} clips, {len(CLASS_NAMES)} classes, {spec.num_groups} groups,",
        f"{spec.resolution}x{spec.resolution} px, {FPS} fps, {spec.seconds[0]}-{spec.seconds[1]} s per clip,",
        f"{video_codec()} video (keyframe every {KEYFRAME_INTERVAL} frames) + AAC mono audio at {spec.audio_rate} Hz.",
        "",
        "Each clip shows one handwritten digit (scikit-learn's 8x8 digits) moving over a textured",
        "background. The class is the MOTION; the digit, its colour, size and tilt are random, and",
        "the background belongs to the group (shared by all classes), so one frame does not tell",
        "the class. Audio: a tone whose pitch is set by the digit (220 Hz * 2^(digit/4)), louder",
        "when the digit moves faster, and a click at each wall/floor hit or zoom reset.",
        "captions.json: one caption per clip (colour, digit and motion, e.g. 'a red seven moves up').",
        "",
        "Classes:",
        *(f"  {i + 1:2d} {name}: {CLASS_DESCRIPTIONS[name]}" for i, name in enumerate(CLASS_NAMES)),
        "",
        "Layout as UCF101: <Class>/v_<Class>_gXX_cYY.mp4 and ucfTrainTestlist/ with classInd.txt,",
        "trainlist0N.txt ('path label') and testlist0N.txt ('path'). Splits are group-disjoint:",
        "fold N holds out a consecutive block of groups, as UCF101 does (7 of 25 groups).",
    ]
    (root / "README.txt").write_text("\n".join(lines) + "\n")
