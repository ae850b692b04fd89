"""The embedded dataset: real MP4 videos rendered from scikit-learn's bundled 8×8 digits.

Nothing can be downloaded, yet a new user must be able to pretrain and evaluate at
once, so vidssl renders its own videos (DESIGN.md, "The embedded dataset"):

* **Classes need time.** Every class is a *motion* (move left/right/up/down,
  rotate clockwise/counter-clockwise, zoom in/out, bounce off the side walls,
  bounce on the floor). Start positions, angles and zoom phases are random, so a
  single frame does not tell the class: only motion does. Digits are large (0.42–0.77 of
  the frame) and motions fast (half to three frame widths per second, 240–480°/s), so the
  motion survives the demo's 8 frames at stride 3 and 32² crops. Format 1 had smaller,
  half-as-fast digits on full-contrast backgrounds: a supervised tiny R3D-18 reached only
  28 % test top-1 after 300 steps there, against 74 % after 250 steps on format 2
  (docs/demo-findings.md).
* **Appearance varies and says nothing about the class.** Which digit (and which
  handwritten instance), its colour, size and tilt are random per clip; the
  background (colour, low-frequency texture, faint static "clutter" digits)
  belongs to a *group* and is shared by every class in that group, like UCF101's
  groups (clips of the same setting). Splits are group-disjoint, so test
  backgrounds are never seen in training.
* **Audio follows the picture.** A tone whose pitch is set by the digit, whose
  loudness follows how fast the digit moves, and a click at every wall/floor hit
  (and every zoom reset). Audio-visual methods can learn correspondence and sync.

Written in the UCF101 layout (``ROOT/<Class>/v_<Class>_gXX_cYY.mp4`` +
``ROOT/ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``), H.264 (or
MPEG-4 Part 2 when PyAV's FFmpeg lacks libx264) in yuv420p at 25 fps with one
keyframe per second, plus an AAC mono track.

The "movie" variant (:func:`generate_movie_demo`) strings shots into scenes: one
long MP4 per movie, MovieNet-SSeg-style keyframes and BaSSL's ndjson annotations.

Both generators are deterministic under ``seed``: the rendered frames and waveforms
are bit-identical and the AAC packets too. x264 runs single-threaded, yet with
PyAV's FFmpeg its output is not always byte-identical from run to run (now and then
the first encode in a process differs slightly), so the decoded pictures agree up to
small codec differences. They skip all work when the output is already complete for
the same size and seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from vidssl.errors import DataError

FPS = 25
BACKGROUND_CONTRAST = 0.5  # texture/clutter/stripes scaled around the background's mean colour
KEYFRAME_INTERVAL = 25
MARKER_NAME = ".vidssl_demo.json"
# 2: larger digits, motions twice as fast, half-contrast backgrounds (module docstring, "Classes need time")
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


@dataclass(frozen=True)
class MovieSize:
    """How much to render for one named size of the movie (scene segmentation) demo."""

    num_movies: tuple[int, int, int]  # train, val, test movies
    scenes_per_movie: tuple[int, int]  # inclusive range
    shots_per_scene: tuple[int, int]  # inclusive range
    shot_seconds: tuple[float, float]
    resolution: int
    audio_rate: int


MOVIE_SIZES: dict[str, MovieSize] = {
    "tiny": MovieSize((2, 1, 1), (5, 7), (1, 4), (0.6, 1.2), 64, 16000),
    "default": MovieSize((6, 2, 2), (12, 18), (2, 5), (1.0, 2.4), 96, 16000),
    "large": MovieSize((20, 5, 5), (20, 30), (2, 6), (1.0, 4.0), 128, 48000),
}


# --------------------------------------------------------------------------------------
# motion classes: each returns a Trajectory for T frames on a W×W canvas


@dataclass
class Trajectory:
    """Per-frame pose of the digit, plus the frames where something audible happens.

    ``centre`` is unwrapped (it may leave the canvas); with ``wrap`` the renderer
    draws it modulo the canvas size, so a digit leaving on the left re-enters on
    the right and the position of any single frame is uniform.
    """

    centre: np.ndarray  # (T, 2) x, y in pixels
    angle: np.ndarray  # (T,) degrees, counter-clockwise on screen
    size: np.ndarray  # (T,) side of the digit in pixels
    events: np.ndarray  # frame indices of wall hits / zoom resets (a click in the audio)
    wrap: bool = False


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _move(direction: tuple[int, int]) -> Callable[[np.random.Generator, int, int], Trajectory]:
    def motion(rng: np.random.Generator, num_frames: int, width: int) -> Trajectory:
        speed = _uniform(rng, (0.5, 0.9)) * width / FPS  # pixels per frame
        start = rng.uniform(0, width, size=2)
        steps = np.arange(num_frames)[:, None] * speed * np.asarray(direction, dtype=np.float64)[None]
        size = _uniform(rng, (0.42, 0.63)) * width
        return Trajectory(
            centre=start[None] + steps,
            angle=np.full(num_frames, _uniform(rng, (-20, 20))),
            size=np.full(num_frames, size),
            events=np.zeros(0, dtype=np.int64),
            wrap=True,
        )

    return motion


def _rotate(sign: int) -> Callable[[np.random.Generator, int, int], Trajectory]:
    def motion(rng: np.random.Generator, num_frames: int, width: int) -> Trajectory:
        degrees_per_frame = _uniform(rng, (240, 480)) / FPS
        size = _uniform(rng, (0.56, 0.77)) * width
        centre = rng.uniform(0.4 * width, 0.6 * width, size=2)
        # positive sign = clockwise on screen = decreasing counter-clockwise angle
        angle = _uniform(rng, (0, 360)) - sign * degrees_per_frame * np.arange(num_frames)
        return Trajectory(
            centre=np.repeat(centre[None], num_frames, 0),
            angle=angle,
            size=np.full(num_frames, size),
            events=np.zeros(0, dtype=np.int64),
        )

    return motion


def _zoom(sign: int) -> Callable[[np.random.Generator, int, int], Trajectory]:
    def motion(rng: np.random.Generator, num_frames: int, width: int) -> Trajectory:
        # sawtooth between a small and a large size with a random phase, so that the
        # size of any single frame is uniform whatever the direction
        period = _uniform(rng, (0.45, 0.75)) * FPS
        phase = (rng.uniform(0, period) + np.arange(num_frames)) / period
        ramp = phase - np.floor(phase)
        ramp = ramp if sign > 0 else 1.0 - ramp
        size = width * (0.28 + 0.63 * ramp)
        resets = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
        centre = rng.uniform(0.4 * width, 0.6 * width, size=2)
        return Trajectory(
            centre=np.repeat(centre[None], num_frames, 0),
            angle=np.full(num_frames, _uniform(rng, (-20, 20))),
            size=size,
            events=resets.astype(np.int64),
        )

    return motion


def _bounce_sides(rng: np.random.Generator, num_frames: int, width: int) -> Trajectory:
    """Ping-pong between the left and right walls, faster than the plain moves."""
    size = _uniform(rng, (0.42, 0.56)) * width
    low, high = size / 2, width - size / 2
    span = high - low
    speed = _uniform(rng, (1.8, 2.8)) * width / FPS
    # unfold the reflection: travel along a line of length 2·span and fold it back
    travel = rng.uniform(0, 2 * span) + speed * np.arange(num_frames)
    folded = np.mod(travel, 2 * span)
    x = low + np.where(folded < span, folded, 2 * span - folded)
    hits = np.nonzero(np.diff(np.floor(travel / span)) > 0)[0] + 1
    y = np.full(num_frames, rng.uniform(0.3 * width, 0.7 * width))
    return Trajectory(
        centre=np.stack([x, y], 1),
        angle=np.full(num_frames, _uniform(rng, (-20, 20))),
        size=np.full(num_frames, size),
        events=hits.astype(np.int64),
    )


def _bounce_floor(rng: np.random.Generator, num_frames: int, width: int) -> Trajectory:
    """A ball dropped under gravity, bouncing elastically on the floor."""
    size = _uniform(rng, (0.42, 0.56)) * width
    # the floor is at a random height (an invisible line) so the digit's position in one
    # frame overlaps with the other classes'
    floor = _uniform(rng, (0.6, 1.0)) * (width - size / 2)
    height = _uniform(rng, (0.3, 0.5)) * floor
    period = _uniform(rng, (0.25, 0.45)) * FPS  # frames between two floor hits
    phase = (rng.uniform(0, period) + np.arange(num_frames)) / period
    within = phase - np.floor(phase)  # 0 at a floor hit, 1 at the next one
    y = floor - height * 4 * within * (1 - within)  # parabola between hits
    hits = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
    x = np.full(num_frames, rng.uniform(0.3 * width, 0.7 * width))
    return Trajectory(
        centre=np.stack([x, y], 1),
        angle=np.full(num_frames, _uniform(rng, (-20, 20))),
        size=np.full(num_frames, size),
        events=hits.astype(np.int64),
    )


# screen coordinates: y grows downwards
MOTIONS: dict[str, Callable[[np.random.Generator, int, int], Trajectory]] = {
    "MoveLeft": _move((-1, 0)),
    "MoveRight": _move((1, 0)),
    "MoveUp": _move((0, -1)),
    "MoveDown": _move((0, 1)),
    "RotateClockwise": _rotate(1),
    "RotateCounterclockwise": _rotate(-1),
    "ZoomIn": _zoom(1),
    "ZoomOut": _zoom(-1),
    "BounceSides": _bounce_sides,
    "BounceFloor": _bounce_floor,
}
CLASS_NAMES: tuple[str, ...] = tuple(MOTIONS)

CLASS_DESCRIPTIONS: dict[str, str] = {
    "MoveLeft": "the digit drifts left at constant speed, wrapping around the frame edge",
    "MoveRight": "the digit drifts right at constant speed, wrapping around the frame edge",
    "MoveUp": "the digit drifts up at constant speed, wrapping around the frame edge",
    "MoveDown": "the digit drifts down at constant speed, wrapping around the frame edge",
    "RotateClockwise": "the digit spins clockwise in place",
    "RotateCounterclockwise": "the digit spins counter-clockwise in place",
    "ZoomIn": "the digit grows, then snaps back small (click), repeatedly",
    "ZoomOut": "the digit shrinks, then snaps back large (click), repeatedly",
    "BounceSides": "the digit moves fast between the left and right walls (click at each hit)",
    "BounceFloor": "the digit falls and bounces on the floor under gravity (click at each hit)",
}


# --------------------------------------------------------------------------------------
# appearance


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images (1797, 8, 8) float32 in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def _random_digit(rng: np.random.Generator, digit: int | None = None) -> tuple[int, np.ndarray]:
    images, labels = _digits()
    digit = int(rng.integers(10)) if digit is None else digit
    choices = np.nonzero(labels == digit)[0]
    return digit, images[int(rng.choice(choices))]


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour whose luminance differs from the background's by at least 60/255."""
    for _ in range(100):
        colour = _random_colour(rng)
        if abs(_luminance(colour) - _luminance(background)) >= 60:
            return colour
    return 255.0 - background


def _draw_sprite(
    alpha: np.ndarray, sprite: np.ndarray, centre: tuple[float, float], size: float, angle: float
) -> None:
    """Draw ``sprite`` (8×8 in [0,1]) into ``alpha`` (H×W float32) with max-compositing."""
    import cv2

    scale = size / sprite.shape[0]
    rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)  # 2×3, about the origin
    half = (sprite.shape[0] - 1) / 2.0
    # sprite pixel (half, half) lands on ``centre``
    rotation[:, 2] = np.asarray(centre) - rotation[:, :2] @ np.array([half, half])
    height, width = alpha.shape
    drawn = cv2.warpAffine(sprite, rotation, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    np.maximum(alpha, drawn, out=alpha)


@dataclass
class Background:
    """A static scene: base colour, low-frequency texture and faint clutter digits. ``image`` is H×W×3 float32."""

    image: np.ndarray
    base_colour: np.ndarray


def _make_background(rng: np.random.Generator, width: int, canvas: int | None = None) -> Background:
    """Random textured background of side ``canvas`` (defaults to ``width``)."""
    import cv2

    canvas = canvas or width
    base = _random_colour(rng)
    grid = int(rng.integers(3, 7))
    texture = rng.normal(size=(grid, grid, 3)).astype(np.float32) * _uniform(rng, (10, 40))
    image = base[None, None].astype(np.float32) + cv2.resize(texture, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
    # faint static digits and stripes: clutter that never moves
    clutter = np.zeros((canvas, canvas), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        _, sprite = _random_digit(rng)
        _draw_sprite(clutter, sprite, tuple(rng.uniform(0, canvas, 2)), _uniform(rng, (0.2, 0.5)) * width,
                     _uniform(rng, (0, 360)))
    clutter_colour = _random_colour(rng).astype(np.float32)
    strength = _uniform(rng, (0.15, 0.35))
    image = image * (1 - strength * clutter[..., None]) + clutter_colour * strength * clutter[..., None]
    if rng.random() < 0.5:  # stripes on half the backgrounds
        period = _uniform(rng, (6, 16)) * canvas / 64
        axis = np.arange(canvas, dtype=np.float32)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * axis / period)
        stripes = stripes[:, None] if rng.random() < 0.5 else stripes[None, :]
        image = image + (stripes[..., None] * _uniform(rng, (8, 25))).astype(np.float32)
    # Half contrast around the mean colour: the texture, clutter and stripes still vary the
    # appearance, but a small network at 32² no longer has to find the moving digit among
    # them (measured: see the module docstring).
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + BACKGROUND_CONTRAST * (image - mean)
    return Background(image=np.clip(image, 0, 255).astype(np.float32), base_colour=base)


def render_frames(
    trajectory: Trajectory, sprite: np.ndarray, colour: np.ndarray, background: np.ndarray
) -> np.ndarray:
    """Composite the moving digit over a static background. Returns uint8 T×H×W×3 (RGB)."""
    height, width = background.shape[:2]
    num_frames = len(trajectory.angle)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    colour = colour.astype(np.float32)[None, None]
    offsets = [(dx, dy) for dx in (-width, 0, width) for dy in (-height, 0, height)] if trajectory.wrap else [(0, 0)]
    for t in range(num_frames):
        alpha = np.zeros((height, width), np.float32)
        x, y = trajectory.centre[t]
        if trajectory.wrap:
            x, y = x % width, y % height
        for dx, dy in offsets:
            _draw_sprite(alpha, sprite, (x + dx, y + dy), float(trajectory.size[t]), float(trajectory.angle[t]))
        alpha = alpha[..., None]
        frames[t] = np.clip(background * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)
    return frames


# --------------------------------------------------------------------------------------
# audio


def digit_pitch(digit: int) -> float:
    """Tone frequency (Hz) for a digit: 220 Hz for 0, a major third up per digit (up to ~1046 Hz)."""
    return 220.0 * 2.0 ** (digit / 4.0)


def _motion_energy(trajectory: Trajectory, width: int) -> np.ndarray:
    """How fast the digit changes on screen per frame, in [0, 1] (T,)."""
    velocity = np.gradient(trajectory.centre, axis=0) if len(trajectory.angle) > 1 else np.zeros((1, 2))
    speed = np.linalg.norm(velocity, axis=1)
    if len(trajectory.angle) > 1:
        spin = np.abs(np.gradient(trajectory.angle)) * np.pi / 180 * trajectory.size / 2  # rim speed
        growth = np.abs(np.gradient(trajectory.size))
        growth[np.abs(growth) > 0.1 * width] = 0  # a zoom reset is a click, not motion
        speed = speed + spin + growth
    return np.clip(speed * FPS / (1.5 * width), 0.0, 1.0)


def render_audio(
    rng: np.random.Generator,
    trajectory: Trajectory,
    digit: int,
    width: int,
    sample_rate: int,
    drone_hz: float | None = None,
) -> np.ndarray:
    """Mono waveform (float32 in [-1, 1]) as long as the video: a digit-pitched tone whose
    loudness follows the motion energy, a click at each event, and an optional low drone."""
    num_frames = len(trajectory.angle)
    num_samples = int(round(num_frames / FPS * sample_rate))
    seconds = np.arange(num_samples) / sample_rate
    pitch = digit_pitch(digit)
    phase = rng.uniform(0, 2 * np.pi)
    tone = np.sin(2 * np.pi * pitch * seconds + phase) + 0.3 * np.sin(4 * np.pi * pitch * seconds + phase)
    envelope = np.interp(seconds, (np.arange(num_frames) + 0.5) / FPS, _motion_energy(trajectory, width))
    wave = tone * (0.05 + 0.3 * envelope)
    click_length = int(0.03 * sample_rate)
    decay = np.exp(-np.arange(click_length) / (0.004 * sample_rate))
    for frame in trajectory.events:
        start = int(round(frame / FPS * sample_rate))
        burst = rng.normal(size=click_length) * decay * 0.5
        end = min(start + click_length, num_samples)
        wave[start:end] += burst[: end - start]
    if drone_hz is not None:
        wave += 0.08 * np.sin(2 * np.pi * drone_hz * seconds)
    wave += rng.normal(scale=0.003, size=num_samples)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------
# encoding


@lru_cache(maxsize=1)
def video_codec() -> str:
    """``libx264`` when PyAV's bundled FFmpeg has it, else FFmpeg's native ``mpeg4``."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None, sample_rate: int) -> None:
    """Encode uint8 T×H×W×3 RGB frames (+ float32 mono audio) to an MP4 at 25 fps.

    One keyframe every second (a short interval keeps random clip access fast), yuv420p,
    single-threaded encoders (workers run in parallel processes instead).
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    codec = video_codec()
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_INTERVAL
        stream.thread_count = 1
        if codec == "libx264":
            stream.options = {
                "preset": "veryfast",
                "crf": "20",
                "x264-params": f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:scenecut=0",
                "threads": "1",
            }
        else:
            stream.codec_context.bit_rate = 8 * frames.shape[1] * frames.shape[2] * FPS // 10
        audio_stream = None
        if audio is not None:
            # FFmpeg's default AAC coder ("twoloop") takes ~50 ms per 2 s clip, more than the
            # video; "fast" takes ~4 ms, and tones and clicks survive it fine
            audio_stream = container.add_stream("aac", rate=sample_rate, layout="mono", options={"aac_coder": "fast"})
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            chunk = 1024 * 16
            for start in range(0, len(audio), chunk):
                piece = av.AudioFrame.from_ndarray(audio[None, start : start + chunk], format="fltp", layout="mono")
                piece.sample_rate = sample_rate
                piece.pts = start
                container.mux(audio_stream.encode(piece))
            container.mux(audio_stream.encode(None))
    os.replace(tmp, path)


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
    if _prepare_root(root, meta):
        return root
    entries = [*CLASS_NAMES, "ucfTrainTestlist", "README.txt"]
    _write_marker(root, meta, entries, complete=False)
    tasks = [
        DemoClip(str(root), class_index, group, clip, int(seed), spec)
        for class_index in range(len(CLASS_NAMES))
        for group in range(1, spec.num_groups + 1)
        for clip in range(1, spec.clips_per_group + 1)
    ]
    _run_tasks(_encode_clip, tasks, workers)
    _write_split_files(root / "ucfTrainTestlist", tasks, spec.num_groups)
    _write_readme(root, spec, size, seed, len(tasks))
    _write_marker(root, meta, entries, complete=True, num_videos=len(tasks))
    return root


def _write_split_files(folder: Path, tasks: list[DemoClip], num_groups: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(CLASS_NAMES)))
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
        "",
        "Classes:",
        *(f"  {i + 1:2d} {name}: {CLASS_DESCRIPTIONS[name]}" for i, name in enumerate(CLASS_NAMES)),
        "",
        "Layout as UCF101: <Class>/v_<Class>_gXX_cYY.mp4 and ucfTrainTestlist/ with classInd.txt,",
        "trainlist0N.txt ('path label') and testlist0N.txt ('path'). Splits are group-disjoint:",
        "fold N holds out a consecutive block of groups, as UCF101 does (7 of 25 groups).",
    ]
    (root / "README.txt").write_text("\n".join(lines) + "\n")


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


def plan_movie(seed: int, movie_index: int, spec: MovieSize) -> list[dict]:
    """Shots of one movie: ``[{"scene", "start", "end", "motion", "digit"}, …]`` (frames, end exclusive)."""
    rng = np.random.default_rng([seed, 3, movie_index])
    shots, frame = [], 0
    for scene in range(int(rng.integers(spec.scenes_per_movie[0], spec.scenes_per_movie[1] + 1))):
        for _ in range(int(rng.integers(spec.shots_per_scene[0], spec.shots_per_scene[1] + 1))):
            length = int(round(_uniform(rng, spec.shot_seconds) * FPS))
            shots.append({"scene": scene, "start": frame, "end": frame + length,
                          "motion": CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))], "digit": int(rng.integers(10))})
            frame += length
    return shots


def _render_movie(task: _MovieJob) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Frames (T×H×W×3 uint8), audio and shot plan of one movie.

    A scene has one style (a background twice the frame size, a drone pitch); each shot
    in it frames a different part of that background (a new "camera angle") with its own
    digit, colour and motion, so shots change inside a scene but the style only changes
    between scenes.
    """
    spec = task.size
    width = spec.resolution
    shots = plan_movie(task.seed, task.movie_index, spec)
    scene_count = shots[-1]["scene"] + 1
    scene_rngs = [np.random.default_rng([task.seed, 4, task.movie_index, s]) for s in range(scene_count)]
    scenes = [(_make_background(r, width, canvas=2 * width), float(r.uniform(70, 180))) for r in scene_rngs]
    frames, audio = [], []
    for index, shot in enumerate(shots):
        rng = np.random.default_rng([task.seed, 5, task.movie_index, index])
        background, drone = scenes[shot["scene"]]
        x0, y0 = rng.integers(0, width + 1, size=2)
        view = np.ascontiguousarray(background.image[y0 : y0 + width, x0 : x0 + width])
        num_frames = shot["end"] - shot["start"]
        trajectory = MOTIONS[shot["motion"]](rng, num_frames, width)
        _, sprite = _random_digit(rng, shot["digit"])
        colour = _contrasting_colour(rng, background.base_colour)
        frames.append(render_frames(trajectory, sprite, colour, view))
        audio.append(render_audio(rng, trajectory, shot["digit"], width, spec.audio_rate, drone_hz=drone))
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
    meta = {"kind": "movie-demo", "size": size, "seed": int(seed), "version": FORMAT_VERSION}
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
        "A movie is a sequence of scenes; a scene is 1+ consecutive shots sharing one style",
        "(background colour/texture/clutter and a low drone in the audio). Each shot frames a",
        "different part of the scene's background and shows one digit with one motion (see the",
        "action demo's classes); cuts between shots are hard cuts.",
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


__all__ = [
    "CLASS_NAMES",
    "DEMO_SIZES",
    "MOVIE_SIZES",
    "DemoSize",
    "MovieSize",
    "generate_demo",
    "generate_movie_demo",
    "DemoClip",
    "render_clip",
    "held_out_groups",
    "digit_pitch",
    "video_codec",
]
