"""Clip plans: which span of a video to decode, and which of its frames each view takes.

A method declares its views (:class:`ViewSpec`) and a plan. For each item the plan,
given the video's frame count, frame rate and a numpy ``Generator``, returns a
:class:`SpanSelection`: one covering span ``[start_frame, end_frame)`` of source
frames that is decoded **once**, and for every view the frame indices into that
decoded span (plus where its audio starts). Views are then sliced, never decoded
again (DESIGN.md principle 1).

Shapes (after the dataset slices and resizes):

* a plan that yields one clip per view (:class:`RandomClipPlan`, :class:`AlignedViewsPlan`):
  ``video[view]`` uint8 ``T×H×W×C``, ``audio[view]`` float32 ``N``;
* a plan that yields several clips per view (:class:`UniformClipsPlan`,
  :class:`MultiClipPlan`): ``video[view]`` uint8 ``K×T×H×W×C``, ``audio[view]`` ``K×N``.

Videos shorter than a plan are **looped** (tiled), as BraVe's ``extend_sequence``
does: the whole video is decoded and indices wrap around; audio wraps the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ViewSpec",
    "ViewSelection",
    "SpanSelection",
    "ClipPlan",
    "RandomClipPlan",
    "UniformClipsPlan",
    "MultiClipPlan",
    "AlignedViewsPlan",
    "MultiViewPlan",
]


@dataclass(frozen=True)
class ViewSpec:
    """One view a method needs.

    Args:
        name: key of the view in the item's ``video`` / ``audio`` dicts.
        num_frames: T, frames in the view.
        stride: step between frames, in source frames (ignored when ``fps`` is set).
        fps: sample at this rate instead (step = source fps / fps, rounded per frame).
        canvas: (H, W) the worker outputs (short side resize, then centre crop); None keeps
            the decoded size (only batchable when all videos share it).
        audio_seconds: seconds of audio starting with the view's first frame (0 = none).
        offset_frames: start relative to the plan's shared start, in source frames
            (:class:`AlignedViewsPlan`; e.g. a time-shifted view).
        reverse: time-reverse the frames (and the audio) of this view.
    """

    name: str
    num_frames: int
    stride: int = 1
    fps: float | None = None
    canvas: tuple[int, int] | None = (112, 112)
    audio_seconds: float = 0.0
    offset_frames: int = 0
    reverse: bool = False

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"view {self.name!r}: num_frames must be >= 1, got {self.num_frames}")
        if self.stride < 1:
            raise ValueError(f"view {self.name!r}: stride must be >= 1, got {self.stride}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"view {self.name!r}: fps must be > 0, got {self.fps}")
        if self.audio_seconds < 0:
            raise ValueError(f"view {self.name!r}: audio_seconds must be >= 0")
        if self.canvas is not None:
            object.__setattr__(self, "canvas", (int(self.canvas[0]), int(self.canvas[1])))

    def relative_indices(self, src_fps: float) -> np.ndarray:
        """Source-frame offsets of the T frames from the view's first frame, shape ``T``."""
        if self.fps is not None:
            step = src_fps / self.fps
            return np.round(np.arange(self.num_frames) * step).astype(np.int64)
        return np.arange(self.num_frames, dtype=np.int64) * self.stride

    def extent(self, src_fps: float) -> int:
        """Source frames the view covers, video and audio (from its first frame)."""
        video = int(self.relative_indices(src_fps)[-1]) + 1
        audio = int(math.ceil(self.audio_seconds * src_fps - 1e-9))
        return max(video, audio)


@dataclass
class ViewSelection:
    """Where one view lies inside the decoded span.

    Attributes:
        frame_indices: int64 ``T`` (or ``K×T``): indices into the decoded span's frames.
        audio_starts: float64 ``()`` (or ``K``): seconds from the span start where the view's
            audio begins (meaningful when ``spec.audio_seconds > 0``).
        spec: the view.
    """

    frame_indices: np.ndarray
    audio_starts: np.ndarray
    spec: ViewSpec


@dataclass
class SpanSelection:
    """The covering span (source frames ``[start_frame, end_frame)``) and every view inside it.

    ``looped`` is True when the video was shorter than the plan: the span is then the whole
    video and indices (and audio positions) wrap modulo its length.
    """

    start_frame: int
    end_frame: int
    views: dict[str, ViewSelection]
    looped: bool = False

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


def _check_video(num_frames: int, fps: float) -> None:
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if fps <= 0:
        raise ValueError(f"video has no frame rate (fps={fps})")


def _unique_names(views) -> None:
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError(f"view names must be unique, got {names}")


def _spans_to_selection(
    starts: dict[str, np.ndarray], views: list[ViewSpec], num_frames: int, fps: float
) -> SpanSelection:
    """Turn absolute per-view clip starts (``K`` each, source frames) into one covering span."""
    lo = min(int(s.min()) for s in starts.values())
    hi = max(int(starts[v.name].max()) + v.extent(fps) for v in views)
    looped = lo < 0 or hi > num_frames
    if looped:  # decode the whole video once; indices wrap around it
        lo, hi = 0, num_frames
    out = {}
    for view in views:
        rel = view.relative_indices(fps)
        absolute = starts[view.name][:, None] + rel[None, :]  # K×T
        if view.reverse:
            absolute = absolute[:, ::-1]
        idx = absolute % num_frames - lo if looped else absolute - lo
        audio = (starts[view.name] - lo) / fps
        if looped:
            audio = np.mod(starts[view.name], num_frames) / fps
        out[view.name] = ViewSelection(np.ascontiguousarray(idx, dtype=np.int64), audio.astype(np.float64), view)
    return SpanSelection(lo, hi, out, looped)


def _squeeze_clips(selection: SpanSelection) -> SpanSelection:
    for view in selection.views.values():
        view.frame_indices = view.frame_indices[0]
        view.audio_starts = view.audio_starts[0]
    return selection


class ClipPlan:
    """Base of all plans: ``views`` and ``sample(num_frames, fps, rng)``.

    ``clips_per_view`` is None for plans that give one clip per view (``T×H×W×C``) and
    K for plans that stack K clips (``K×T×H×W×C``).
    """

    views: list[ViewSpec]
    clips_per_view: int | None = None

    def sample(self, num_frames: int, fps: float, rng: np.random.Generator) -> SpanSelection:
        raise NotImplementedError

    def sample_info(self, info, rng: np.random.Generator) -> SpanSelection:
        """Same as :meth:`sample`, reading ``num_frames`` and ``fps`` from a VideoInfo-like object."""
        return self.sample(int(info.num_frames), float(info.fps), rng)

    @property
    def needs_audio(self) -> bool:
        return any(v.audio_seconds > 0 for v in self.views)


def _random_start(num_frames: int, extent: int, rng: np.random.Generator, center: bool = False) -> int:
    room = num_frames - extent
    if room <= 0:
        return 0
    return room // 2 if center else int(rng.integers(0, room + 1))


@dataclass
class RandomClipPlan(ClipPlan):
    """One clip at a random start (``center=True``: the middle clip, for validation).

    Output per item: ``video[view.name]`` ``T×H×W×C``.
    """

    view: ViewSpec
    center: bool = False

    @property
    def views(self) -> list[ViewSpec]:
        return [self.view]

    def sample(self, num_frames, fps, rng):
        _check_video(num_frames, fps)
        start = _random_start(num_frames, self.view.extent(fps), rng, self.center)
        return _squeeze_clips(_spans_to_selection({self.view.name: np.array([start])}, self.views, num_frames, fps))


@dataclass
class UniformClipsPlan(ClipPlan):
    """K clips with uniformly spaced starts, for testing (e.g. K = 10 or 30 clips per video).

    Starts are ``round(linspace(0, num_frames - extent, K))``: first and last clip touch the
    ends of the video (BraVe's ``compute_linearly_spaced_sample_indices``); K = 1 is the
    centre clip. Output per item: ``video[view.name]`` ``K×T×H×W×C``.
    """

    view: ViewSpec
    num_clips: int = 10

    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")

    @property
    def views(self) -> list[ViewSpec]:
        return [self.view]

    @property
    def clips_per_view(self) -> int:
        return self.num_clips

    def sample(self, num_frames, fps, rng=None):
        _check_video(num_frames, fps)
        room = max(num_frames - self.view.extent(fps), 0)
        if self.num_clips == 1:
            starts = np.array([room // 2])
        else:
            starts = np.round(np.linspace(0, room, self.num_clips)).astype(np.int64)
        return _spans_to_selection({self.view.name: starts}, self.views, num_frames, fps)


@dataclass
class MultiClipPlan(ClipPlan):
    """ρ clips at independent random starts, all sliced from ONE decode of the span covering them.

    For ρBYOL / FGKVMemPred (ρ = 2 clips, no distance constraint) and GDT's two time
    positions τ1, τ2 (each with its audio; the reversed versions are flips on the device).
    Output per item: ``video[view.name]`` ``ρ×T×H×W×C`` and ``audio[view.name]`` ``ρ×N``.
    """

    view: ViewSpec
    rho: int = 2

    def __post_init__(self):
        if self.rho < 1:
            raise ValueError(f"rho must be >= 1, got {self.rho}")

    @property
    def views(self) -> list[ViewSpec]:
        return [self.view]

    @property
    def clips_per_view(self) -> int:
        return self.rho

    def sample(self, num_frames, fps, rng):
        _check_video(num_frames, fps)
        room = num_frames - self.view.extent(fps)
        if room <= 0:  # too short for one clip: all clips start at 0 and loop
            starts = np.zeros(self.rho, dtype=np.int64)
        else:
            starts = rng.integers(0, room + 1, size=self.rho)
        return _spans_to_selection({self.view.name: starts}, self.views, num_frames, fps)


@dataclass
class AlignedViewsPlan(ClipPlan):
    """Several views sharing one random start ``s``; view ``v`` starts at ``s + v.offset_frames``.

    BraVe: narrow ``ViewSpec("narrow", 16, stride=2, canvas=(224, 224))`` and broad
    ``ViewSpec("broad", 64, stride=4, canvas=(112, 112), audio_seconds=...)`` both start at
    the same frame (the broad view is left-aligned to the narrow one). GDT-style fixed
    pairs: a time-shifted view (``offset_frames``) and a reversed one (``reverse=True``).

    The start is drawn so that every view fits; when the video is too short it is drawn so
    the shortest view fits and the others loop over the end (BraVe's ``extend_sequence``).
    Output per item: one ``T×H×W×C`` clip per view name.
    """

    views: list[ViewSpec] = field(default_factory=list)
    center: bool = False

    def __post_init__(self):
        if not self.views:
            raise ValueError("AlignedViewsPlan needs at least one view")
        _unique_names(self.views)
        if min(v.offset_frames for v in self.views) < 0:
            raise ValueError("offset_frames must be >= 0 (put the earliest view at offset 0)")

    def sample(self, num_frames, fps, rng):
        _check_video(num_frames, fps)
        ends = [v.offset_frames + v.extent(fps) for v in self.views]
        longest = max(ends)
        if longest <= num_frames:
            start = _random_start(num_frames, longest, rng, self.center)
        else:
            start = _random_start(num_frames, min(ends), rng, self.center)
        starts = {v.name: np.array([start + v.offset_frames]) for v in self.views}
        return _squeeze_clips(_spans_to_selection(starts, self.views, num_frames, fps))


# The name used in docs/interfaces.md.
MultiViewPlan = AlignedViewsPlan
