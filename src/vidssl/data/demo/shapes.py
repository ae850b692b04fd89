"""The second embedded dataset, "shapes": other objects, other motions, another resolution and frame rate.

A recipe tuned on the digits dataset (:func:`~vidssl.data.demo.generate_demo`) alone may have learnt that
dataset rather than video, so vidssl renders a second labelled dataset that shares nothing with it but
the layout (UCF101, three group-disjoint folds) and the principle that only motion tells the class:

============  ==============================================  ==================================================
              digits (``generate_demo``)                      shapes (:func:`generate_shapes_demo`)
============  ==============================================  ==================================================
objects       scikit-learn's handwritten digits, 0.42–0.77    filled geometric shapes with an outline (circle,
              of the frame                                    square, triangle, star, cross, ring, hexagon),
                                                              0.24–0.36 of the frame
classes       10: drift ×4, spin ×2, zoom ×2, two bounces     8: orbit ×2, pendulum, pulse, squash, shake,
                                                              billiard (off all four walls), hop
frames        64², 25 fps, 2.0–2.4 s, keyframe every 25        96², 30 fps, 2.5–3.0 s, keyframe every 30
background    low-frequency texture, faint digits, stripes    two-colour gradient, soft blobs, faint static
                                                              shapes; per-frame sensor noise and a slow
                                                              brightness flicker
audio         16 kHz; a tone pitched by the digit, louder     22.05 kHz; a buzz whose pitch follows the
              when it moves, clicks at hits                   object's height and whose timbre follows its
                                                              shape, louder when it moves, clicks at wall hits
                                                              and hops
============  ==============================================  ==================================================

``vidssl data demo --dataset shapes --out DIR`` writes it; ``vidssl demo --dataset shapes`` runs the demo
on it, and a preset reads it with ``data.demo_variant=shapes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vidssl.data.demo.dataset import (
    DemoClip,
    DemoSize,
    _check_size,
    _clip_tasks,
    _limit_threads,
    _prepare_root,
    _run_tasks,
    _write_marker,
    _write_split_files,
)
from vidssl.data.demo.captions import CAPTIONS_FILE, colour_name, write_caption_table
from vidssl.data.demo.render import (
    Background,
    _contrasting_colour,
    _random_colour,
    _uniform,
    add_clicks,
    video_codec,
    write_mp4,
)

SHAPES_FPS = 30
SHAPES_KEYFRAME_INTERVAL = 30
SHAPES_FORMAT_VERSION = 1
SHAPES_BACKGROUND_CONTRAST = 0.6


#: Sizes of the shapes dataset (the fields of the digits' :class:`~vidssl.data.demo.dataset.DemoSize`).
SHAPES_SIZES: dict[str, DemoSize] = {
    # tests: every class, 4 clips per class, a few seconds to generate
    "tiny": DemoSize(num_groups=4, clips_per_group=1, seconds=(2.0, 2.0), resolution=48, audio_rate=16000),
    # the counterpart of the digits' default size: 8 classes × 25 groups × 4 clips = 800 clips
    "default": DemoSize(num_groups=25, clips_per_group=4, seconds=(2.5, 3.0), resolution=96, audio_rate=22050),
}


# --------------------------------------------------------------------------------------
# motions: each returns a ShapePath for T frames on a W×W canvas (y grows downwards)


@dataclass
class ShapePath:
    """Per-frame pose of the shape and the frames where something audible happens.

    ``size`` is the side of the shape's bounding box; ``aspect`` stretches it to ``size·aspect`` wide and
    ``size/aspect`` high (1 = undistorted). With ``wrap`` the centre is drawn modulo the canvas.
    """

    centre: np.ndarray  # (T, 2) x, y in pixels
    angle: np.ndarray  # (T,) degrees, counter-clockwise on screen
    size: np.ndarray  # (T,)
    aspect: np.ndarray  # (T,)
    events: np.ndarray  # frame indices of wall hits and hops (a click in the audio)
    wrap: bool = False


def _seconds(num_frames: int) -> np.ndarray:
    return np.arange(num_frames) / SHAPES_FPS


def _base_size(rng: np.random.Generator, width: int) -> float:
    return _uniform(rng, (0.24, 0.36)) * width


def _still(num_frames: int, value: float) -> np.ndarray:
    return np.full(num_frames, float(value))


def _orbit(sign: int) -> Callable[[np.random.Generator, int, int], ShapePath]:
    def motion(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
        radius = _uniform(rng, (0.16, 0.26)) * width
        centre = rng.uniform(0.4 * width, 0.6 * width, size=2)
        turns_per_second = _uniform(rng, (0.7, 1.2))
        # with y pointing down, an increasing screen angle runs clockwise
        theta = rng.uniform(0, 2 * np.pi) + sign * 2 * np.pi * turns_per_second * _seconds(num_frames)
        path = centre[None] + radius * np.stack([np.cos(theta), np.sin(theta)], 1)
        return ShapePath(path, _still(num_frames, _uniform(rng, (0, 360))), _still(num_frames, _base_size(rng, width)),
                         _still(num_frames, 1.0), np.zeros(0, np.int64))

    return motion


def _pendulum(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Swings on an invisible rod from a pivot near the top edge; the shape tilts with the rod."""
    pivot = np.array([_uniform(rng, (0.35, 0.65)), _uniform(rng, (-0.1, 0.15))]) * width
    length = _uniform(rng, (0.45, 0.65)) * width
    amplitude = np.deg2rad(_uniform(rng, (30, 55)))
    swing = amplitude * np.sin(2 * np.pi * _uniform(rng, (0.9, 1.4)) * _seconds(num_frames) + rng.uniform(0, 2 * np.pi))
    path = pivot[None] + length * np.stack([np.sin(swing), np.cos(swing)], 1)
    return ShapePath(path, _uniform(rng, (0, 360)) + np.rad2deg(swing), _still(num_frames, _base_size(rng, width)),
                     _still(num_frames, 1.0), np.zeros(0, np.int64))


def _in_place(rng: np.random.Generator, num_frames: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A still centre (T×2) and a sinusoid of 1.5–2.5 Hz with a random phase (T,) for the in-place classes."""
    centre = np.repeat(rng.uniform(0.3 * width, 0.7 * width, size=2)[None], num_frames, 0)
    wave = np.sin(2 * np.pi * _uniform(rng, (1.5, 2.5)) * _seconds(num_frames) + rng.uniform(0, 2 * np.pi))
    return centre, wave


def _pulse(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Grows and shrinks smoothly (±40 %), in place."""
    centre, wave = _in_place(rng, num_frames, width)
    size = _base_size(rng, width) * (1 + 0.4 * wave)
    return ShapePath(centre, _still(num_frames, _uniform(rng, (0, 360))), size, _still(num_frames, 1.0),
                     np.zeros(0, np.int64))


def _squash(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Stretches wide while flattening, then tall while narrowing, in place (area kept)."""
    centre, wave = _in_place(rng, num_frames, width)
    return ShapePath(centre, _still(num_frames, _uniform(rng, (-15, 15))), _still(num_frames, _base_size(rng, width)),
                     np.exp(0.45 * wave), np.zeros(0, np.int64))


def _shake(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Trembles around a still point: an independent offset every frame."""
    centre = rng.uniform(0.3 * width, 0.7 * width, size=2)
    jitter = rng.normal(scale=_uniform(rng, (0.04, 0.07)) * width, size=(num_frames, 2))
    return ShapePath(centre[None] + jitter, _still(num_frames, _uniform(rng, (0, 360))),
                     _still(num_frames, _base_size(rng, width)), _still(num_frames, 1.0), np.zeros(0, np.int64))


def _fold(travel: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflect an unbounded 1-D travel into [low, high]; also the frames where it hit a wall."""
    span = high - low
    folded = np.mod(travel - low, 2 * span)
    position = low + np.where(folded < span, folded, 2 * span - folded)
    hits = np.nonzero(np.diff(np.floor((travel - low) / span)) != 0)[0] + 1
    return position, hits


def _billiard(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Travels on a slant and reflects off all four walls (a click at each hit)."""
    size = _base_size(rng, width)
    low, high = size / 2, width - size / 2
    speed = _uniform(rng, (1.0, 1.6)) * width / SHAPES_FPS
    heading = np.deg2rad(_uniform(rng, (25, 65)) + 90 * int(rng.integers(4)))
    start = rng.uniform(low, high, size=2)
    steps = np.arange(num_frames) * speed
    x, hits_x = _fold(start[0] + steps * np.cos(heading), low, high)
    y, hits_y = _fold(start[1] + steps * np.sin(heading), low, high)
    return ShapePath(np.stack([x, y], 1), _still(num_frames, _uniform(rng, (0, 360))), _still(num_frames, size),
                     _still(num_frames, 1.0), np.union1d(hits_x, hits_y).astype(np.int64))


def _hop(rng: np.random.Generator, num_frames: int, width: int) -> ShapePath:
    """Stands still, then jumps sideways by a quarter of the frame, every 0.3–0.5 s (a click per hop);
    the direction is drawn per clip and the shape wraps around the frame edge."""
    period = _uniform(rng, (0.3, 0.5)) * SHAPES_FPS
    phase = (rng.uniform(0, period) + np.arange(num_frames)) / period
    hops = np.floor(phase)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    jump = _uniform(rng, (0.2, 0.3)) * width
    x = rng.uniform(0, width) + direction * jump * (hops - hops[0])
    y = _still(num_frames, rng.uniform(0.3 * width, 0.7 * width))
    events = np.nonzero(np.diff(hops) > 0)[0] + 1
    return ShapePath(np.stack([x, y], 1), _still(num_frames, _uniform(rng, (0, 360))),
                     _still(num_frames, _base_size(rng, width)), _still(num_frames, 1.0), events.astype(np.int64),
                     wrap=True)


SHAPE_MOTIONS: dict[str, Callable[[np.random.Generator, int, int], ShapePath]] = {
    "OrbitClockwise": _orbit(1),
    "OrbitCounterclockwise": _orbit(-1),
    "Pendulum": _pendulum,
    "Pulse": _pulse,
    "Squash": _squash,
    "Shake": _shake,
    "Billiard": _billiard,
    "Hop": _hop,
}
SHAPE_CLASS_NAMES: tuple[str, ...] = tuple(SHAPE_MOTIONS)

SHAPE_CLASS_DESCRIPTIONS: dict[str, str] = {
    "OrbitClockwise": "the shape circles a point clockwise, 0.7-1.2 turns per second",
    "OrbitCounterclockwise": "the shape circles a point counter-clockwise, 0.7-1.2 turns per second",
    "Pendulum": "the shape swings from a pivot near the top edge, tilting with the rod",
    "Pulse": "the shape grows and shrinks smoothly in place",
    "Squash": "the shape stretches wide and flat, then tall and narrow, in place",
    "Shake": "the shape trembles around a still point",
    "Billiard": "the shape travels on a slant and reflects off all four walls (click at each hit)",
    "Hop": "the shape stands still, then jumps sideways, repeatedly (click at each hop)",
}
SHAPE_MOTION_PHRASES: dict[str, str] = {
    "OrbitClockwise": "circles clockwise", "OrbitCounterclockwise": "circles counterclockwise",
    "Pendulum": "swings like a pendulum", "Pulse": "pulses", "Squash": "squashes and stretches",
    "Shake": "shakes", "Billiard": "bounces off the walls", "Hop": "hops sideways",
}


# --------------------------------------------------------------------------------------
# appearance


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], 1)


def _regular(sides: int, rotation: float = 0.0) -> np.ndarray:
    angles = rotation + np.arange(sides) * 2 * np.pi / sides
    return np.stack([np.cos(angles), np.sin(angles)], 1)


_CROSS = np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1], [-0.3, 1],
                   [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]])

#: Outlines of each shape in unit coordinates (a shape fits the square [-1, 1]²); the ring has a hole.
SHAPES: dict[str, list[np.ndarray]] = {
    "circle": [_regular(40)],
    "square": [_regular(4, np.pi / 4) * np.sqrt(2) * 0.85],
    "triangle": [_regular(3, -np.pi / 2)],
    "star": [_star()],
    "cross": [_CROSS],
    "ring": [_regular(40), _regular(40) * 0.55],
    "hexagon": [_regular(6)],
}
SHAPE_NAMES: tuple[str, ...] = tuple(SHAPES)


def _outlines(shape: str, centre, size: float, aspect: float, angle: float) -> list[np.ndarray]:
    """The shape's outlines in pixels, for one pose."""
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])  # counter-clockwise on screen
    scale = np.array([size / 2 * aspect, size / 2 / aspect])
    return [(outline * scale) @ rotation.T + np.asarray(centre)[None] for outline in SHAPES[shape]]


def _shape_masks(shape: str, centre, size: float, aspect: float, angle: float, height: int, width: int,
                 outline_px: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased fill and outline coverage (H×W float32 in [0, 1]) of one pose of a shape.

    Drawn with OpenCV at 1/16-pixel precision; several outlines are filled with the even-odd rule, which
    gives the ring its hole.
    """
    import cv2

    shift = 4
    polygons = [np.round(p * (1 << shift)).astype(np.int32) for p in _outlines(shape, centre, size, aspect, angle)]
    fill = np.zeros((height, width), np.uint8)
    cv2.fillPoly(fill, polygons, 255, lineType=cv2.LINE_AA, shift=shift)
    edge = np.zeros((height, width), np.uint8)
    cv2.polylines(edge, polygons, True, 255, thickness=outline_px, lineType=cv2.LINE_AA, shift=shift)
    return fill.astype(np.float32) / 255.0, edge.astype(np.float32) / 255.0


def _shapes_background(seed: int, group: int, width: int) -> Background:
    """Two-colour gradient, soft colour blobs and faint static shapes, at 60 % contrast around the mean."""
    rng = np.random.default_rng([seed, 11, group])
    axis = np.linspace(0.0, 1.0, width, dtype=np.float32)
    heading = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(heading) * axis[None, :] + np.sin(heading) * axis[:, None]
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    first, second = _random_colour(rng), _random_colour(rng)
    image = first[None, None] * (1 - ramp[..., None]) + second[None, None] * ramp[..., None]
    yy, xx = np.mgrid[0:width, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(3, 6))):
        cx, cy = rng.uniform(0, width, 2)
        sigma = _uniform(rng, (0.1, 0.25)) * width
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[..., None] * 0.35
        image = image * (1 - blob) + _random_colour(rng)[None, None] * blob
    for _ in range(int(rng.integers(1, 3))):  # clutter that never moves
        name = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
        fill, _ = _shape_masks(name, rng.uniform(0, width, 2), _uniform(rng, (0.15, 0.3)) * width, 1.0,
                               _uniform(rng, (0, 360)), width, width)
        strength = _uniform(rng, (0.2, 0.35)) * fill[..., None]
        image = image * (1 - strength) + _random_colour(rng)[None, None] * strength
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + SHAPES_BACKGROUND_CONTRAST * (image - mean)
    image = np.clip(image, 0, 255).astype(np.float32)
    return Background(image=image, base_colour=image.mean(axis=(0, 1)))


def render_shape_frames(path: ShapePath, shape: str, colour: np.ndarray, background: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Composite the moving shape (fill + darker outline) over the background, then a slow brightness
    flicker (±4 %, 0.3–1 Hz) and sensor noise (σ 3/255) drawn from ``rng``. Returns uint8 T×H×W×3 (RGB)."""
    height, width = background.shape[:2]
    num_frames = len(path.angle)
    outline_colour = colour.astype(np.float32) * 0.35
    fill_colour = colour.astype(np.float32)
    flicker = 1 + 0.04 * np.sin(2 * np.pi * _uniform(rng, (0.3, 1.0)) * _seconds(num_frames) + rng.uniform(0, 2 * np.pi))
    offsets = [-width, 0, width] if path.wrap else [0]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        x, y = path.centre[t]
        if path.wrap:
            x = x % width
        fill = np.zeros((height, width), np.float32)
        edge = np.zeros((height, width), np.float32)
        for dx in offsets:
            f, e = _shape_masks(shape, (x + dx, y), float(path.size[t]), float(path.aspect[t]), float(path.angle[t]),
                                height, width)
            np.maximum(fill, f, out=fill)
            np.maximum(edge, e, out=edge)
        picture = background * (1 - fill[..., None]) + fill_colour * fill[..., None]
        picture = picture * (1 - edge[..., None]) + outline_colour * edge[..., None]
        picture = picture * flicker[t] + rng.normal(scale=3.0, size=picture.shape)
        frames[t] = np.clip(picture + 0.5, 0, 255).astype(np.uint8)
    return frames


# --------------------------------------------------------------------------------------
# audio


def height_pitch(y: np.ndarray, width: int) -> np.ndarray:
    """Buzz frequency (Hz) for a vertical position: 800 Hz at the top edge, 200 Hz at the bottom (2 octaves)."""
    return 200.0 * 4.0 ** (1.0 - np.clip(np.asarray(y, np.float64) / width, 0.0, 1.0))


def _shape_motion_energy(path: ShapePath, width: int) -> np.ndarray:
    """How fast the shape changes on screen per frame, in [0, 1] (T,); hops count as clicks, not motion."""
    if len(path.angle) < 2:
        return np.zeros(len(path.angle))
    velocity = np.gradient(path.centre, axis=0)
    speed = np.linalg.norm(velocity, axis=1)
    speed[speed > 0.15 * width] = 0.0  # a hop is a click
    growth = np.abs(np.gradient(path.size)) + path.size * np.abs(np.gradient(np.log(path.aspect)))
    spin = np.abs(np.gradient(path.angle)) * np.pi / 180 * path.size / 2
    return np.clip((speed + growth + spin) * SHAPES_FPS / (1.5 * width), 0.0, 1.0)


def render_shape_audio(rng: np.random.Generator, path: ShapePath, shape: str, width: int, sample_rate: int) -> np.ndarray:
    """Mono waveform (float32 in [-1, 1]) as long as the video: a buzz whose pitch follows the shape's height
    (:func:`height_pitch`), with 1–4 harmonics set by the shape, louder when it moves faster, and a click
    at each wall hit and hop."""
    num_frames = len(path.angle)
    num_samples = int(round(num_frames / SHAPES_FPS * sample_rate))
    seconds = np.arange(num_samples) / sample_rate
    frame_times = (np.arange(num_frames) + 0.5) / SHAPES_FPS
    pitch = np.interp(seconds, frame_times, height_pitch(path.centre[:, 1], width))
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(pitch) / sample_rate
    harmonics = 1 + SHAPE_NAMES.index(shape) % 4
    tone = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    envelope = np.interp(seconds, frame_times, _shape_motion_energy(path, width))
    wave = tone * (0.05 + 0.3 * envelope)
    add_clicks(wave, rng, path.events, SHAPES_FPS, sample_rate)
    wave += rng.normal(scale=0.003, size=num_samples)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------
# the dataset (UCF101 layout)


@dataclass(frozen=True)
class ShapesClip(DemoClip):
    """One clip of the shapes dataset: a :class:`~vidssl.data.demo.dataset.DemoClip` whose class is a shape motion."""

    @property
    def class_name(self) -> str:
        return SHAPE_CLASS_NAMES[self.class_index]


def render_shapes_clip(task: ShapesClip) -> tuple[np.ndarray, np.ndarray, dict]:
    """Frames (T×H×W×3 uint8), audio (N float32) and a description (shape, colour name, caption) of one clip."""
    size = task.size
    width = size.resolution
    rng = np.random.default_rng([task.seed, 12, task.class_index, task.group, task.clip])
    num_frames = int(round(_uniform(rng, size.seconds) * SHAPES_FPS))
    background = _shapes_background(task.seed, task.group, width)
    path = SHAPE_MOTIONS[task.class_name](rng, num_frames, width)
    shape = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
    colour = _contrasting_colour(rng, background.base_colour)
    frames = render_shape_frames(path, shape, colour, background.image, rng)
    audio = render_shape_audio(rng, path, shape, width, size.audio_rate)
    name = colour_name(colour)
    info = {"shape": shape, "colour": name, "num_frames": num_frames, "events": path.events.tolist(),
            "caption": f"a {name} {shape} {SHAPE_MOTION_PHRASES[task.class_name]}"}
    return frames, audio, info


def _encode_shapes_clip(task: ShapesClip) -> tuple[str, str]:
    _limit_threads()
    frames, audio, info = render_shapes_clip(task)
    write_mp4(Path(task.root) / task.relpath, frames, audio, task.size.audio_rate, fps=SHAPES_FPS,
              keyframe_interval=SHAPES_KEYFRAME_INTERVAL)
    return task.relpath, info["caption"]


def generate_shapes_demo(out: str | os.PathLike, size: str = "default", seed: int = 0,
                         workers: int | None = None) -> Path:
    """Render the shapes dataset into ``out`` (UCF101 layout, ``captions.json``) and return its path.

    Example:
        >>> root = generate_shapes_demo("/tmp/vidssl_shapes", size="tiny")  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
        ['Billiard', 'Hop']

    ``workers`` processes render and encode in parallel (default: all CPUs). Skips all work if ``out``
    already holds a complete shapes dataset of this size and seed; another size, seed or dataset written
    there by ``vidssl data demo`` is replaced.
    """
    _check_size(size, SHAPES_SIZES)
    spec = SHAPES_SIZES[size]
    root = Path(out)
    meta = {"kind": "ucf101-shapes", "size": size, "seed": int(seed), "version": SHAPES_FORMAT_VERSION}
    if _prepare_root(root, meta):
        return root
    tasks = _clip_tasks(ShapesClip, root, len(SHAPE_CLASS_NAMES), spec, seed)
    entries = [*SHAPE_CLASS_NAMES, "ucfTrainTestlist", "README.txt", CAPTIONS_FILE]
    _write_marker(root, meta, entries, complete=False)
    captions = dict(_run_tasks(_encode_shapes_clip, tasks, workers))
    _write_split_files(root / "ucfTrainTestlist", tasks, spec.num_groups, SHAPE_CLASS_NAMES)
    write_caption_table(root, captions)
    _write_shapes_readme(root, spec, size, seed, len(tasks))
    _write_marker(root, meta, entries, complete=True, num_videos=len(tasks))
    return root


def _write_shapes_readme(root: Path, spec: DemoSize, size: str, seed: int, count: int) -> None:
    lines = [
        "vidssl 'shapes' dataset (generated by `vidssl data demo --dataset shapes`)",
        "",
        f"size {size}, seed {seed}: {count} clips, {len(SHAPE_CLASS_NAMES)} classes, {spec.num_groups} groups,",
        f"{spec.resolution}x{spec.resolution} px, {SHAPES_FPS} fps, {spec.seconds[0]}-{spec.seconds[1]} s per clip,",
        f"{video_codec()} video (keyframe every {SHAPES_KEYFRAME_INTERVAL} frames) + AAC mono audio at {spec.audio_rate} Hz.",
        "",
        "Each clip shows one outlined geometric shape (" + ", ".join(SHAPE_NAMES) + ") moving over a",
        "gradient background with soft blobs and faint static shapes, with sensor noise and a slow",
        "brightness flicker. The class is the MOTION; the shape, its colour, size and tilt are random, and",
        "the background belongs to the group (shared by all classes). Audio: a buzz whose pitch follows",
        "the shape's height (800 Hz at the top, 200 Hz at the bottom), louder when it moves faster, and",
        "a click at each wall hit or hop. captions.json: one caption per clip ('a red star hops sideways').",
        "",
        "Classes:",
        *(f"  {i + 1:2d} {name}: {SHAPE_CLASS_DESCRIPTIONS[name]}" for i, name in enumerate(SHAPE_CLASS_NAMES)),
        "",
        "Layout as UCF101 (see the digits dataset's README): group-disjoint folds of 7 of 25 groups.",
    ]
    (root / "README.txt").write_text("\n".join(lines) + "\n")
