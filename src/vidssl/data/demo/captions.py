"""Captions of the embedded dataset: one sentence per clip that says what happens in it.

``"a red seven moves to the left"``: the digit's colour (the nearest of a few colour names), the digit
as a word and the motion of its class. Written by :func:`generate_demo` as ``ROOT/captions.json``
(``{relative video path: caption}``), which every manifest of the dataset reads into
``annotations["captions"]`` (:mod:`vidssl.data.text`); video–text GDT trains on them.

The caption is computed from the same random draws as the clip (:func:`clip_draws` replays
``render_clip``'s generator up to the colour), so it can be written for an existing dataset without
rendering anything again.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from vidssl.data.demo.render import FPS, MOTIONS, _contrasting_colour, _random_digit, _uniform

CAPTIONS_FILE = "captions.json"

COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (220, 30, 30),
    "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 220, 40), "cyan": (40, 210, 220),
    "magenta": (210, 40, 200), "orange": (240, 140, 30), "purple": (120, 50, 160), "pink": (240, 150, 180),
    "brown": (130, 80, 40),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MOTION_PHRASES: dict[str, str] = {
    "MoveLeft": "moves to the left", "MoveRight": "moves to the right", "MoveUp": "moves up",
    "MoveDown": "moves down", "RotateClockwise": "spins clockwise", "RotateCounterclockwise": "spins counterclockwise",
    "ZoomIn": "grows and snaps back small", "ZoomOut": "shrinks and snaps back large",
    "BounceSides": "bounces between the walls", "BounceFloor": "bounces on the floor",
}


def colour_name(rgb) -> str:
    """The nearest of :data:`COLOUR_NAMES` to an RGB colour (0–255)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(COLOUR_NAMES, key=lambda name: float(((np.asarray(COLOUR_NAMES[name]) - rgb) ** 2).sum()))


@lru_cache(maxsize=64)
def _background_colour(seed: int, group: int, width: int) -> np.ndarray:
    from vidssl.data.demo.dataset import _group_background

    return _group_background(seed, group, width).base_colour


def clip_draws(task) -> tuple[int, np.ndarray, int]:
    """``(digit, colour, num_frames)`` of a :class:`~vidssl.data.demo.dataset.DemoClip`, drawn exactly as
    ``render_clip`` draws them (same generator, same order), without rendering."""
    size = task.size
    rng = np.random.default_rng([task.seed, 2, task.class_index, task.group, task.clip])
    num_frames = int(round(_uniform(rng, size.seconds) * FPS))
    MOTIONS[task.class_name](rng, num_frames, size.resolution)
    digit, _ = _random_digit(rng)
    colour = _contrasting_colour(rng, _background_colour(task.seed, task.group, size.resolution))
    return digit, colour, num_frames


def clip_caption(task) -> str:
    digit, colour, _ = clip_draws(task)
    return f"a {colour_name(colour)} {DIGIT_WORDS[digit]} {MOTION_PHRASES[task.class_name]}"


def write_captions(root: str | os.PathLike, tasks: list) -> Path:
    """Write ``ROOT/captions.json`` for the demo clips ``tasks`` (atomically)."""
    return write_caption_table(root, {task.relpath: clip_caption(task) for task in tasks})


def write_caption_table(root: str | os.PathLike, table: dict[str, str]) -> Path:
    """Write ``{relative video path: caption}`` as ``ROOT/captions.json`` (atomically)."""
    root = Path(root)
    tmp = root / (CAPTIONS_FILE + ".part")
    tmp.write_text(json.dumps(table, indent=0, sort_keys=True))
    os.replace(tmp, root / CAPTIONS_FILE)
    return root / CAPTIONS_FILE
