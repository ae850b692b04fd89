"""How each view is cut from one decoded item: a slicer per view kind, in the plain dict :data:`SLICERS`.

Every slicer takes the item's :class:`SliceContext` (the span decoded once, audio and flow decoded on
demand) and one view's :class:`~vidssl.data.sampling.ViewSelection`, and returns the view's tensor and
whether it holds real data (``valid``): video and image frames fitted to the view's canvas (or cut by a
worker crop), audio at the view's own rate (invalid when the track is missing or does not cover the
view), optical flow from the per-video cache. :class:`vidssl.data.datasets.VideoDataset` calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.data.decode import resized_size
from vidssl.data.sampling import SpanSelection, ViewSelection
from vidssl.errors import VideoDecodeError

if TYPE_CHECKING:  # the dataset calls the slicers; only its type is needed here
    from vidssl.data.datasets import VideoDataset

__all__ = ["SLICERS", "SliceContext", "fit_canvas", "crop_and_fit", "slice_frames", "slice_audio", "slice_flow"]


def _cover_short_side(height: int, width: int, canvas: tuple[int, int]) -> int:
    """Smallest short side for which an (height, width) frame covers ``canvas`` after resizing."""
    scale = max(canvas[0] / height, canvas[1] / width)
    return max(1, math.ceil(min(height, width) * scale - 1e-6))


def fit_canvas(frames: torch.Tensor, canvas: tuple[int, int] | None) -> torch.Tensor:
    """Resize (short side, aspect kept) and centre-crop uint8 ``...×H×W×C`` frames to ``canvas`` (H, W)."""
    if canvas is None:
        return frames
    h, w = frames.shape[-3], frames.shape[-2]
    short = _cover_short_side(h, w, canvas)
    nh, nw = resized_size(h, w, short)
    nh, nw = max(nh, canvas[0]), max(nw, canvas[1])
    if (nh, nw) != (h, w):
        lead = frames.shape[:-3]
        x = frames.reshape(-1, h, w, frames.shape[-1]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, nh, nw, -1)
    top, left = (nh - canvas[0]) // 2, (nw - canvas[1]) // 2
    return frames[..., top : top + canvas[0], left : left + canvas[1], :].contiguous()


# --------------------------------------------------------------------------------------------
# Slicers: one per view kind
# --------------------------------------------------------------------------------------------


@dataclass
class SliceContext:
    """What the slicers of one item share: the decoded span once, and lazily decoded audio/flow."""

    dataset: "VideoDataset"
    path: str
    info: Any
    selection: SpanSelection
    frames: torch.Tensor | None = None  # decoded frames at ``wanted`` (uint8 N×H×W×C)
    wanted: np.ndarray | None = None  # sorted span indices of ``frames``
    audio: dict[int, tuple[torch.Tensor | None, bool]] = field(default_factory=dict)  # rate -> (N, padded)

    def span_audio(self, rate: int) -> tuple[torch.Tensor | None, bool]:
        """The span's mono audio at ``rate`` (None when the file has no track) and whether it was padded."""
        if rate not in self.audio:
            if not self.info.has_audio:
                self.audio[rate] = (None, False)
            else:
                fps, sel = self.info.fps, self.selection
                self.audio[rate] = self.dataset.decoder.decode_audio(self.path, sel.start_frame / fps,
                                                                     sel.end_frame / fps, rate)
        return self.audio[rate]


def crop_and_fit(frames: torch.Tensor, box: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Cut ``box`` (x0, y0, x1, y1 as fractions of the frame) out of uint8 ``...×H×W×C`` frames and
    resize it to ``size`` (H, W) with antialiasing."""
    h, w = frames.shape[-3], frames.shape[-2]
    x0, x1 = int(round(box[0] * w)), max(int(round(box[0] * w)) + 1, int(round(box[2] * w)))
    y0, y1 = int(round(box[1] * h)), max(int(round(box[1] * h)) + 1, int(round(box[3] * h)))
    lead = frames.shape[:-3]
    x = frames[..., y0:y1, x0:x1, :].reshape(-1, y1 - y0, x1 - x0, frames.shape[-1]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, *size, -1).contiguous()


def slice_frames(ctx: SliceContext, view: ViewSelection) -> tuple[torch.Tensor, bool]:
    """Video/image views: the view's frames from the decoded span, fitted to its canvas (or, for a
    view with a worker crop, its box cut from the whole frame and resized to the canvas)."""
    positions = torch.from_numpy(np.asarray(np.searchsorted(ctx.wanted, view.frame_indices)))
    if view.crop_box is not None:
        return crop_and_fit(ctx.frames[positions], view.crop_box, view.spec.canvas), True
    return fit_canvas(ctx.frames[positions], view.spec.canvas), True


def slice_audio(ctx: SliceContext, view: ViewSelection) -> tuple[torch.Tensor, bool]:
    """Audio views: ``N`` (or ``K×N``) samples from the view's start; invalid when not all real."""
    spec, sel = view.spec, ctx.selection
    rate = spec.sample_rate
    count = int(round(spec.seconds * rate))
    starts = np.atleast_1d(view.audio_starts)
    span_audio, padded = ctx.span_audio(rate)
    valid = span_audio is not None and span_audio.numel() > 0 and not padded
    if span_audio is not None and padded and not sel.looped:
        # The track does not cover the whole span; whether it covers THIS view is asked of the
        # decoder for the view's own time range (a rare case: tracks cut short).
        out, valid = _audio_of_view_range(ctx, starts, spec.seconds, rate, count)
    elif not valid:
        out = torch.zeros(len(starts), count)
    else:
        first = np.round(starts * rate).astype(np.int64)[:, None] + np.arange(count)[None, :]
        n = span_audio.numel()
        if sel.looped:
            # Loop the audio like the frames: wrap over the audio of the whole video.
            period = max(1, min(n, int(round(sel.num_frames / ctx.info.fps * rate))))
            out = span_audio[torch.from_numpy(first % period)]
        else:
            beyond = first >= n
            # more than 1 % of the view past the end of the decoded audio: cut short
            valid = bool(beyond.mean() <= 0.01)
            out = span_audio[torch.from_numpy(np.clip(first, 0, n - 1))]
            out[torch.from_numpy(beyond)] = 0.0
    if spec.reverse:
        out = out.flip(-1)
    return (out[0] if np.ndim(view.audio_starts) == 0 else out), bool(valid)


def _audio_of_view_range(ctx: SliceContext, starts: np.ndarray, seconds: float, rate: int,
                         count: int) -> tuple[torch.Tensor, bool]:
    """The view's audio decoded for its own time range (``K×N``), valid only if every clip is fully covered."""
    fps, first = ctx.info.fps, ctx.selection.start_frame
    rows, valid = [], True
    for start in starts:
        t0 = first / fps + float(start)
        audio, padded = ctx.dataset.decoder.decode_audio(ctx.path, t0, t0 + seconds, rate)
        if audio is None or padded:
            valid = False
            audio = torch.zeros(count)
        rows.append(audio[:count] if audio.numel() >= count else F.pad(audio, (0, count - audio.numel())))
    return torch.stack(rows), valid


def slice_flow(ctx: SliceContext, view: ViewSelection) -> tuple[torch.Tensor, bool]:
    """Flow views: cached optical flow at the view's source frames, ``2×T×H×W`` in [-1, 1]."""
    from vidssl.data.flow import flow_view

    options = view.spec.flow
    try:
        cached = ctx.dataset.flow_cache(options).get(ctx.path)
    except (OSError, ValueError) as exc:
        raise VideoDecodeError(ctx.path, f"optical flow failed: {exc}") from None
    # indices into the decoded span -> source frames (a looped span starts at frame 0)
    frames = cached.frames(ctx.selection.start_frame + view.frame_indices)
    canvas = view.spec.canvas or cached.codes.shape[1:3]
    out = torch.from_numpy(flow_view(frames, tuple(canvas), options.max_pixels))
    if view.spec.reverse:
        # played backwards every displacement points the other way (flow of t→t+1 becomes about
        # -flow of t+1→t; the frame order is already reversed by the plan)
        out = -out
    return out, True


#: How each view kind is cut from a decoded item: kind -> slicer(context, view) -> (tensor, valid).
SLICERS: dict[str, Callable[[SliceContext, ViewSelection], tuple[torch.Tensor, bool]]] = {
    "video": slice_frames,
    "image": slice_frames,
    "audio": slice_audio,
    "flow": slice_flow,
}
