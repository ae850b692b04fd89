"""Rendering for the embedded dataset: motion trajectories, scikit-learn digits, textured
backgrounds, frame compositing, audio synthesis and MP4 encoding (no dataset layout here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

FPS = 25
BACKGROUND_CONTRAST = 0.5  # texture/clutter/stripes scaled around the background's mean colour
KEYFRAME_INTERVAL = 25


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
    """A static scene: ``image`` (H×W×3 float32) and ``base_colour``, the colour a moving object must contrast
    with (the digits' base colour before texture and clutter; the shapes' mean colour)."""

    image: np.ndarray
    base_colour: np.ndarray


def _make_background(rng: np.random.Generator, width: int, canvas: int | None = None,
                     contrast: float = BACKGROUND_CONTRAST) -> Background:
    """Random textured background of side ``canvas`` (defaults to ``width``); ``contrast`` scales the
    texture, clutter and stripes around the mean colour."""
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
    # them (measured: see the vidssl.data.demo docstring).
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + contrast * (image - mean)
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


def add_clicks(wave: np.ndarray, rng: np.random.Generator, event_frames, fps: float, sample_rate: int) -> None:
    """Add a 30 ms decaying noise burst (a click) to ``wave`` (N,) in place at each event frame."""
    click_length = int(0.03 * sample_rate)
    decay = np.exp(-np.arange(click_length) / (0.004 * sample_rate))
    for frame in event_frames:
        start = int(round(frame / fps * sample_rate))
        burst = rng.normal(size=click_length) * decay * 0.5
        end = min(start + click_length, len(wave))
        wave[start:end] += burst[: end - start]


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
    add_clicks(wave, rng, trajectory.events, FPS, sample_rate)
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


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None, sample_rate: int,
              fps: int = FPS, keyframe_interval: int = KEYFRAME_INTERVAL) -> None:
    """Encode uint8 T×H×W×3 RGB frames (+ float32 mono audio) to an MP4 at ``fps`` (default 25).

    One keyframe every ``keyframe_interval`` frames (default: every second; a short interval keeps
    random clip access fast), yuv420p, single-threaded encoders (workers run in parallel processes instead).
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    codec = video_codec()
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = keyframe_interval
        stream.thread_count = 1
        if codec == "libx264":
            stream.options = {
                "preset": "veryfast",
                "crf": "20",
                "x264-params": f"keyint={keyframe_interval}:min-keyint={keyframe_interval}:scenecut=0",
                "threads": "1",
            }
        else:
            stream.codec_context.bit_rate = 8 * frames.shape[1] * frames.shape[2] * fps // 10
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
