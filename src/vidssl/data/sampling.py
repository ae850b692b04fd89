"""Views and plans: which span of a video to decode, and what each named view takes from it.

A method declares its views (:class:`ViewSpec`): each has a *name* that says what it is
(``"narrow"``, ``"broad_audio"``, ``"clip_1"``), a *kind* (video frames, audio waveform, optical
flow, still image) and its own *rate* (frames every ``stride`` source frames or at ``fps``;
audio at ``sample_rate``). A plan (:class:`ClipPlan`) looks at a record (its probed frame count
and rate, and its annotations) and returns a :class:`SpanSelection`: one covering span
``[start_frame, end_frame)`` of source frames that is decoded **once**, and for every view the
frame indices into that span (and, for audio, where it starts). The dataset then slices each
view with the slicer of its kind (``vidssl.data.datasets.SLICERS``); nothing is decoded twice
(DESIGN.md principle 1).

Per item, after slicing (``item["clips"][name]``):

=========  ==========================================  =============================
kind       one clip per view                            K clips per view (eval plans)
=========  ==========================================  =============================
video      uint8 ``T×H×W×C``                           ``K×T×H×W×C``
image      uint8 ``H×W×C``                             ``K×H×W×C`` (e.g. one per shot)
audio      float32 ``N`` (N = seconds · sample_rate)   ``K×N``
flow       float32 ``2×T×H×W`` in [-1, 1]              —
=========  ==========================================  =============================

Views that share a start: a view with ``align_to="narrow"`` starts where view ``narrow`` starts
(plus ``offset_frames``); views without ``align_to`` are *anchors* that get independent random
starts (ρBYOL's ρ clips, GDT's two time positions). Videos shorter than a group of views are
**looped** (tiled), as BraVe's ``extend_sequence`` does: the whole video is decoded and indices
wrap around; audio wraps the same way. (The view model and the plans that share its private
helpers stay in this one file, a little over vidssl's ~400-line norm; the shot-window plan lives in
:mod:`vidssl.data.shot_windows`.)

Example:
    >>> import numpy as np
    >>> narrow = ViewSpec("narrow", num_frames=4, stride=2)
    >>> audio = ViewSpec("narrow_audio", kind="audio", seconds=0.5, sample_rate=16000, align_to="narrow")
    >>> plan = ViewsPlan([narrow, audio])
    >>> sel = plan.sample(VideoShape(num_frames=100, fps=25.0), np.random.default_rng(0))
    >>> sel.views["narrow"].frame_indices.tolist(), float(sel.views["narrow_audio"].audio_starts)
    ([0, 2, 4, 6], 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vidssl.errors import DataError

__all__ = [
    "ViewKind",
    "VIEW_KINDS",
    "FlowOptions",
    "ViewSpec",
    "frame_rate",
    "ViewSelection",
    "SpanSelection",
    "VideoShape",
    "ClipPlan",
    "ViewsPlan",
    "RandomClipPlan",
    "UniformClipsPlan",
    "ShotWindowPlan",
]

ViewKind = Literal["video", "audio", "flow", "image"]
VIEW_KINDS: tuple[str, ...] = ("video", "audio", "flow", "image")


@dataclass(frozen=True)
class FlowOptions:
    """How a flow view is computed (once per video, cached) and scaled.

    ``method``: OpenCV ``"dis"`` or ``"farneback"``; ``short_side``: resolution the flow is
    computed at; ``max_pixels``: displacement (in pixels of the view) mapped to 1.0.
    """

    method: str = "dis"
    short_side: int = 128
    max_pixels: float = 20.0


@dataclass(frozen=True)
class CropOptions:
    """A random resized crop drawn from the WHOLE frame (PySlowFast's ``random_resized_crop``), cut in
    the worker and resized to the view's ``canvas``.

    ``scale``: area fraction of the frame; ``ratio``: aspect (w/h) range, log-uniform;
    ``source_short_side``: the frame scale the recipe crops at (PySlowFast: videos prepared at a
    256 short side); frames are decoded at that scale and each view carries its ``zoom`` (output
    pixels per source pixel) so device-side filters can act as they would have before the crop.
    """

    scale: tuple[float, float] = (0.2, 0.766)
    ratio: tuple[float, float] = (0.75, 1.333)
    source_short_side: int = 256


@dataclass(frozen=True)
class ViewSpec:
    """One view a method needs.

    Args:
        name: key of the view in the item's ``clips`` / ``valid`` dicts and in ``augment``'s output.
        kind: ``"video"`` (RGB frames), ``"audio"`` (mono waveform), ``"flow"`` (optical flow of
            the frames the view covers) or ``"image"`` (one still frame, e.g. a shot keyframe).
        num_frames: T, frames of a video/flow view (1 for images; unused for audio).
        stride: step between frames, in source frames (ignored when ``fps`` is set).
        fps: sample frames at this rate instead (step = source fps / fps, rounded per frame).
        canvas: (H, W) the worker outputs (short side resize, then centre crop); None keeps the
            decoded size (only batchable when all videos share it).
        seconds: length of an audio view.
        sample_rate: rate (Hz) an audio view is decoded at.
        align_to: name of the view whose start this one shares (None: an anchor, its own start).
        offset_frames: start relative to the anchor's start, in source frames.
        reverse: time-reverse the view (frames or waveform).
        flow: flow settings of a ``"flow"`` view.
        crop: a random resized crop from the whole frame, cut by the worker (video/image views);
            the output is ``canvas``. None: the worker fits frames to the canvas (centre crop).
    """

    name: str
    kind: ViewKind = "video"
    num_frames: int = 1
    stride: int = 1
    fps: float | None = None
    canvas: tuple[int, int] | None = (112, 112)
    seconds: float = 0.0
    sample_rate: int = 16000
    align_to: str | None = None
    offset_frames: int = 0
    reverse: bool = False
    flow: FlowOptions | None = None
    crop: CropOptions | None = None

    def __post_init__(self):
        where = f"view {self.name!r}"
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"{where}: kind must be one of {list(VIEW_KINDS)}, got {self.kind!r}")
        if self.num_frames < 1:
            raise ValueError(f"{where}: num_frames must be >= 1, got {self.num_frames}")
        if self.kind == "image" and self.num_frames != 1:
            raise ValueError(f"{where}: an image view has one frame, got num_frames={self.num_frames}")
        if self.stride < 1:
            raise ValueError(f"{where}: stride must be >= 1, got {self.stride}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"{where}: fps must be > 0, got {self.fps}")
        if self.kind == "audio":
            if self.seconds <= 0:
                raise ValueError(f"{where}: an audio view needs seconds > 0, got {self.seconds}")
            if self.sample_rate <= 0:
                raise ValueError(f"{where}: sample_rate must be > 0, got {self.sample_rate}")
        if self.offset_frames < 0:
            raise ValueError(f"{where}: offset_frames must be >= 0 (put the earliest view first)")
        if self.crop is not None and (self.kind not in ("video", "image") or self.canvas is None):
            raise ValueError(f"{where}: a worker crop needs a video or image view with a canvas (its output size)")
        if self.kind == "flow" and self.flow is None:
            object.__setattr__(self, "flow", FlowOptions())
        if self.canvas is not None:
            object.__setattr__(self, "canvas", (int(self.canvas[0]), int(self.canvas[1])))

    @property
    def decodes_frames(self) -> bool:
        """Whether the view needs decoded RGB frames (flow comes from its own cache)."""
        return self.kind in ("video", "image")

    def relative_indices(self, src_fps: float) -> np.ndarray:
        """Source-frame offsets of the T frames from the view's first frame, shape ``T``."""
        if self.kind == "audio":
            return np.zeros(1, dtype=np.int64)
        if self.fps is not None:
            step = src_fps / self.fps
            return np.round(np.arange(self.num_frames) * step).astype(np.int64)
        return np.arange(self.num_frames, dtype=np.int64) * self.stride

    def extent(self, src_fps: float) -> int:
        """Source frames the view covers from its first frame (audio: ``ceil(seconds · fps)``)."""
        if self.kind == "audio":
            return max(1, int(math.ceil(self.seconds * src_fps - 1e-9)))
        return int(self.relative_indices(src_fps)[-1]) + 1


def frame_rate(stride: int, target_fps: float | None = None) -> dict[str, Any]:
    """``ViewSpec`` keywords for "every ``stride``-th frame": of the video resampled to ``target_fps``
    (a clip then spans the same seconds at any source rate: BraVe's 25 fps, PySlowFast's 30), or of
    the source frames when ``target_fps`` is None.

    Example:
        >>> frame_rate(4, 30.0), frame_rate(4)
        ({'fps': 7.5}, {'stride': 4})
    """
    return {"fps": target_fps / stride} if target_fps else {"stride": stride}


@dataclass
class ViewSelection:
    """Where one view lies inside the decoded span.

    Attributes:
        frame_indices: int64 ``T`` (or ``K×T``; images ``()`` or ``K``): indices into the span.
        audio_starts: float64 ``()`` (or ``K``): seconds from the span start where the view begins.
        spec: the view.
    """

    frame_indices: np.ndarray
    audio_starts: np.ndarray
    spec: ViewSpec
    crop_box: np.ndarray | None = None  # (x0, y0, x1, y1) as fractions of the frame (``spec.crop``)
    zoom: float = 1.0  # output pixels per pixel of the frame at ``crop.source_short_side``


@dataclass
class SpanSelection:
    """The covering span (source frames ``[start_frame, end_frame)``) and every view inside it.

    ``looped`` is True when the video was shorter than the plan: the span is then the whole
    video and indices (and audio positions) wrap modulo its length. ``extras`` are per-item
    arrays the plan adds to the item as they are (e.g. a shot window's ``shot_labels``).
    """

    start_frame: int
    end_frame: int
    views: dict[str, ViewSelection]
    looped: bool = False
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass(frozen=True)
class VideoShape:
    """The two numbers a plan needs from a video when there is no record (tests, benchmarks)."""

    num_frames: int
    fps: float
    annotations: dict = field(default_factory=dict)
    path: str = "<video>"
    width: int = 320
    height: int = 240


def _shape_of(record: Any) -> tuple[int, float]:
    """``(num_frames, fps)`` of a :class:`~vidssl.data.index.VideoRecord` (probed) or a :class:`VideoShape`."""
    info = getattr(record, "info", record)
    if info is None:
        raise DataError(f"{getattr(record, 'path', record)} was not probed: no frame count or frame rate")
    num_frames, fps = int(info.num_frames), float(info.fps)
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if fps <= 0:
        raise ValueError(f"video has no frame rate (fps={fps})")
    return num_frames, fps


def _check_views(views: list[ViewSpec]) -> None:
    if not views:
        raise ValueError("a plan needs at least one view")
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError(f"view names must be unique, got {names}")
    for view in views:
        if view.align_to is not None:
            if view.align_to not in names:
                raise ValueError(f"view {view.name!r} is aligned to unknown view {view.align_to!r}")
            anchor = next(v for v in views if v.name == view.align_to)
            if anchor.align_to is not None:
                raise ValueError(f"view {view.name!r} is aligned to {anchor.name!r}, which is aligned itself")


def _spans_to_selection(starts: dict[str, np.ndarray], views: list[ViewSpec], num_frames: int,
                        fps: float) -> SpanSelection:
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
        if view.kind == "image":
            idx = idx[:, 0]
        audio = np.mod(starts[view.name], num_frames) / fps if looped else (starts[view.name] - lo) / fps
        out[view.name] = ViewSelection(np.ascontiguousarray(idx, dtype=np.int64), audio.astype(np.float64), view)
    return SpanSelection(lo, hi, out, looped)


def _squeeze_clips(selection: SpanSelection) -> SpanSelection:
    for view in selection.views.values():
        view.frame_indices = view.frame_indices[0]
        view.audio_starts = view.audio_starts[0]
    return selection


def _random_start(num_frames: int, extent: int, rng: np.random.Generator | None, center: bool = False) -> int:
    room = num_frames - extent
    if room <= 0:
        return 0
    return room // 2 if (center or rng is None) else int(rng.integers(0, room + 1))


class ClipPlan:
    """Base of all plans.

    ``views``: the :class:`ViewSpec` list. ``item_keys(record)``: the items one record yields
    (default ``[None]``: one item per video; a shot-window plan yields one per shot).
    ``sample(record, rng, key)``: the :class:`SpanSelection` of that item. ``clips_per_view`` is
    None for plans that give one clip per view and K for plans that stack K clips.
    """

    views: list[ViewSpec]
    clips_per_view: int | None = None

    def item_keys(self, record: Any) -> list[Any]:
        return [None]

    def sample(self, record: Any, rng: np.random.Generator | None, key: Any = None) -> SpanSelection:
        raise NotImplementedError

    def kinds(self) -> set[str]:
        return {v.kind for v in self.views}


@dataclass
class ViewsPlan(ClipPlan):
    """Named views at random times: anchors (``align_to=None``) at independent random starts,
    every other view at its anchor's start + ``offset_frames`` (``center=True``: the middle).

    - ρBYOL / FGKVMemPred: ``clip_1 … clip_ρ``, all anchors (ρ clips at independent times).
    - BraVe: ``narrow`` (anchor) and ``broad_video``/``broad_audio``/``broad_flow`` aligned to it
      (left-aligned broad views, A2).
    - GDT: ``clip_1`` + ``clip_1_audio`` (aligned) and ``clip_2`` + ``clip_2_audio``.

    ``fit="group"``: the start of a group (an anchor and its aligned views) is drawn so the whole
    group fits; when the video is too short, so that the shortest member fits and the others loop
    over the end. ``fit="anchor"`` (BraVe's sampler): the start is drawn so the *anchor* fits,
    over the whole video, and aligned views that run past the end loop (``extend_sequence``).
    Output per item: one clip per view name.
    """

    views: list[ViewSpec] = field(default_factory=list)
    center: bool = False
    fit: Literal["group", "anchor"] = "group"

    def __post_init__(self):
        _check_views(self.views)
        if self.fit not in ("group", "anchor"):
            raise ValueError(f"fit must be 'group' or 'anchor', got {self.fit!r}")

    def sample(self, record, rng, key=None):
        num_frames, fps = _shape_of(record)
        starts: dict[str, np.ndarray] = {}
        for anchor in (v for v in self.views if v.align_to is None):
            group = [anchor] + [v for v in self.views if v.align_to == anchor.name]
            ends = [v.offset_frames + v.extent(fps) for v in group]
            if self.fit == "anchor":
                needed = anchor.extent(fps)
            else:
                needed = max(ends) if max(ends) <= num_frames else min(ends)
            start = _random_start(num_frames, needed, rng, self.center)
            for view in group:
                starts[view.name] = np.array([start + view.offset_frames])
        selection = _squeeze_clips(_spans_to_selection(starts, self.views, num_frames, fps))
        draw_crops(selection, record, rng, self.center)
        return selection


def draw_crops(selection: SpanSelection, record: Any, rng: np.random.Generator | None, center: bool = False) -> None:
    """Draw each ``crop`` view's box from the whole frame (torchvision's RandomResizedCrop search on the
    frame's size at ``source_short_side``) and its zoom; ``center`` or no ``rng``: the centred crop of
    the whole frame's largest allowed aspect."""
    import torch

    from vidssl.data.transforms.geometry import sample_crop_boxes

    info = getattr(record, "info", record)
    for view in selection.views.values():
        options = view.spec.crop
        if options is None:
            continue
        height, width = int(info.height), int(info.width)
        scale = options.source_short_side / min(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if center or rng is None:
            crop_scale = (1.0, 1.0)
            seed = 0
        else:
            crop_scale, seed = options.scale, int(rng.integers(2**62))
        box = sample_crop_boxes(1, h, w, crop_scale, options.ratio, device=torch.device("cpu"),
                                generator=torch.Generator().manual_seed(seed))[0].numpy()
        view.crop_box = box / np.array([w, h, w, h], dtype=np.float64)
        view.zoom = float(view.spec.canvas[1] / max(1.0, box[2] - box[0]))


def RandomClipPlan(view: ViewSpec, center: bool = False) -> ViewsPlan:  # noqa: N802 (a plan constructor)
    """One clip of ``view`` at a random start (``center=True``: the middle clip, for validation)."""
    return ViewsPlan([view], center=center)


@dataclass
class UniformClipsPlan(ClipPlan):
    """K clips with uniformly spaced starts, for testing (e.g. K = 10 or 30 clips per video).

    Starts are ``round(linspace(0, num_frames - extent, K))``: first and last clip touch the
    ends of the video (BraVe's ``compute_linearly_spaced_sample_indices``); K = 1 is the
    centre clip. Output per item: ``clips[view.name]`` ``K×T×H×W×C``.
    """

    view: ViewSpec
    num_clips: int = 10

    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")
        _check_views([self.view])

    @property
    def views(self) -> list[ViewSpec]:
        return [self.view]

    @property
    def clips_per_view(self) -> int:
        return self.num_clips

    def sample(self, record, rng=None, key=None):
        num_frames, fps = _shape_of(record)
        room = max(num_frames - self.view.extent(fps), 0)
        if self.num_clips == 1:
            starts = np.array([room // 2])
        else:
            starts = np.round(np.linspace(0, room, self.num_clips)).astype(np.int64)
        return _spans_to_selection({self.view.name: starts}, self.views, num_frames, fps)


# A window of consecutive shots of a movie (BaSSL): a plan like the others, in its own module.
from vidssl.data.shot_windows import ShotWindowPlan  # noqa: E402
