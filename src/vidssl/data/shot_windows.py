"""Items that are windows of consecutive shots of a movie (BaSSL): :class:`ShotWindowPlan`.

A record with ``annotations["shots"]`` gives one item per shot; the item is the window of shots
around it, one still frame per shot, with per-shot labels (see :mod:`vidssl.data.sampling` for
the plan interface).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from vidssl.data.sampling import ClipPlan, SpanSelection, ViewSelection, ViewSpec, _shape_of
from vidssl.errors import DataError

__all__ = ["ShotWindowPlan"]


@dataclass
class ShotWindowPlan(ClipPlan):
    """A window of consecutive shots of a movie: one item per shot, centred on it (BaSSL).

    Needs the record's ``annotations["shots"]`` (``[start, end)`` frame pairs). For the item of
    shot ``c`` the window is shots ``c - shots_per_side … c + shots_per_side``; at the ends of the
    movie the first/last shot is repeated (``shot_valid`` is False there). Each shot gives one
    frame of ``view`` (an ``"image"`` view): a random frame of the shot (``center=False``) or its
    middle frame. Output per item: ``clips[view.name]`` ``S×H×W×C`` (S = 2·shots_per_side + 1)
    and extras ``shot_labels`` int64 ``S`` (the record's ``annotations["shot_labels"]``, -1
    where unknown), ``shot_valid`` bool ``S`` and ``shot_index`` int64 ``S``.
    """

    view: ViewSpec
    shots_per_side: int = 8
    center: bool = False

    def __post_init__(self):
        if self.view.kind != "image":
            raise ValueError(f"a shot window takes one still frame per shot: view {self.view.name!r} must be "
                             f"kind 'image', got {self.view.kind!r}")
        if self.shots_per_side < 0:
            raise ValueError(f"shots_per_side must be >= 0, got {self.shots_per_side}")

    @property
    def views(self) -> list[ViewSpec]:
        return [self.view]

    @property
    def clips_per_view(self) -> int:
        return 2 * self.shots_per_side + 1

    def _shots(self, record) -> list:
        shots = (getattr(record, "annotations", None) or {}).get("shots")
        if not shots:
            raise DataError(f"{getattr(record, 'path', record)} has no shot annotations (annotations['shots']); "
                            "a shot-window plan needs them (detect shots first: `vidssl data shots`)")
        return shots

    def item_keys(self, record) -> list[int]:
        return list(range(len(self._shots(record))))

    def sample(self, record, rng, key=None):
        num_frames, fps = _shape_of(record)
        shots = self._shots(record)
        labels = (getattr(record, "annotations", None) or {}).get("shot_labels") or [-1] * len(shots)
        centre = 0 if key is None else int(key)
        wanted = np.arange(centre - self.shots_per_side, centre + self.shots_per_side + 1)
        index = np.clip(wanted, 0, len(shots) - 1)
        frames = []
        for i in index:
            start, end = int(shots[i][0]), int(shots[i][1])
            end = min(max(end, start + 1), num_frames)
            if self.center or rng is None:
                frames.append((start + end - 1) // 2)
            else:
                frames.append(int(rng.integers(start, end)))
        absolute = np.asarray(frames, dtype=np.int64)
        lo, hi = int(absolute.min()), int(absolute.max()) + 1
        selection = SpanSelection(lo, hi, {self.view.name: ViewSelection(absolute - lo, np.zeros(len(absolute)),
                                                                         self.view)})
        selection.extras = {"shot_labels": np.asarray([labels[i] for i in index], dtype=np.int64),
                            "shot_valid": wanted == index, "shot_index": index.astype(np.int64)}
        return selection
