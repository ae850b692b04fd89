"""Random erasing for clips, batched on the device (:class:`RandomErasing`).

The semantics are timm's ``RandomErasing``, which BEVT's SSv2 fine-tuning calls once per frame
(``RandomErasing(probability=0.25)`` after ``Normalize``). The seed restores the Python, NumPy and
torch random states before each frame, so every frame of a clip is erased in the same box with the
same values. Here the draw is made once per clip and shared by its frames.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from vidssl.data.transforms.core import (
    ClipTransform,
    Params,
    _apply_where,
    _check_clip,
    _draw_device,
    bernoulli,
    uniform,
)


def _normal(shape: tuple[int, ...], *, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device)).to(device)


class RandomErasing(ClipTransform):
    """With probability ``p``, replace one or more random rectangles of a clip, the same in every
    frame (timm's ``RandomErasing``, per clip).

    Per clip: ``count`` boxes, a whole number drawn from ``count=(min, max)``. Each box makes up to
    ``attempts`` tries of area U(``scale``)·H·W / count and aspect h/w log-uniform in ``ratio``, with
    sides ``round(sqrt(area·aspect))`` × ``round(sqrt(area/aspect))``. The first try whose sides are
    strictly smaller than the frame's is placed at a uniform whole-pixel offset. A box with no such
    try erases nothing, as in timm. Later boxes are painted over earlier ones.

    Fill (timm's ``mode``), in the normalised space: ``"const"`` 0, ``"rand"`` one N(0, 1) value per
    box and channel, ``"pixel"`` N(0, 1) per pixel and channel (the same noise in every frame).

    Where it runs: timm erases after ``Normalize``. With the defaults ``mean=0, std=1``, that is where
    this transform belongs too. Given the ``mean``/``std`` of the ``Normalize`` that follows it, it can
    instead run on [0, 1] clips just before that step. It then writes ``mean + std·z``, which the
    ``Normalize`` maps to exactly the seed's ``z``. vidssl's train views run that way because their
    steps all come before the protocol's ``Normalize`` (:func:`vidssl.eval.views.build_train_augment`).
    Such clips then hold values outside [0, 1] (mode ``"const"`` fills the mean colour, which stays
    inside).

    ``B×C×T×H×W`` float → the same shape and dtype.

    Example:
        >>> erase = RandomErasing(p=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        >>> erase(torch.rand(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 4, 32, 32])
    """

    MODES = ("const", "rand", "pixel")

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 1 / 3),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3), mode: str = "const",
                 count: int | tuple[int, int] = 1, attempts: int = 10,
                 mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"RandomErasing: p must be in [0, 1], got {p}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomErasing: need 0 < scale[0] <= scale[1] <= 1 (area fractions), got {scale}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomErasing: need 0 < ratio[0] <= ratio[1] (aspect h/w), got {ratio}")
        if mode not in self.MODES:
            raise ValueError(f"RandomErasing: unknown mode {mode!r}; choose one of {', '.join(self.MODES)}")
        counts = (count, count) if isinstance(count, int) else tuple(count)
        if len(counts) != 2 or not all(isinstance(c, int) for c in counts) or not 1 <= counts[0] <= counts[1]:
            raise ValueError(f"RandomErasing: count must be an int >= 1 or (min, max) with 1 <= min <= max, "
                             f"got {count}")
        if int(attempts) != attempts or attempts < 1:
            raise ValueError(f"RandomErasing: attempts must be a positive integer, got {attempts}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if not bool(torch.isfinite(mean_t).all()) or not bool((std_t > 0).all()):
            raise ValueError(f"RandomErasing: mean must be finite and std positive, got {mean}, {std}")
        self.p, self.scale, self.ratio, self.mode = float(p), tuple(scale), tuple(ratio), mode
        self.count, self.attempts = counts, int(attempts)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1, 1), persistent=False)

    def draw(self, shape, device, generator=None) -> Params:
        """``applied`` (B,); ``active`` ``B×K`` (K = the largest count: whether box k erases);
        ``boxes`` ``B×K×4`` (x0, y0, x1, y1) in whole pixels; ``values``: the fill in the normalised
        space, ``B×K×C`` (``"const"``: zeros, ``"rand"``) or ``B×C×H×W`` (``"pixel"``)."""
        batch, channels, height, width = shape[0], shape[1], shape[-2], shape[-1]
        lowest, highest = self.count
        boxes_max, attempts = highest, self.attempts
        draw = dict(device=device, generator=generator)
        applied = bernoulli(batch, self.p, **draw)
        count = (lowest + torch.floor(uniform(batch, 0.0, 1.0, **draw) * (highest - lowest + 1))).clamp_(max=highest)
        area = uniform((batch, boxes_max, attempts), *self.scale, **draw) * (height * width) / count.view(-1, 1, 1)
        aspect = torch.exp(uniform((batch, boxes_max, attempts), math.log(self.ratio[0]), math.log(self.ratio[1]),
                                   **draw))
        box_h = torch.round(torch.sqrt(area * aspect))
        box_w = torch.round(torch.sqrt(area / aspect))
        fits = (box_h < height) & (box_w < width)  # strictly, as timm
        first = fits.int().argmax(dim=2, keepdim=True)  # the first try that fits
        box_h = box_h.gather(2, first).squeeze(2)
        box_w = box_w.gather(2, first).squeeze(2)
        offset = uniform((batch, boxes_max, 2), 0.0, 1.0, **draw)
        top = torch.floor(offset[..., 0] * (height - box_h + 1)).clamp(min=0.0).minimum((height - box_h).clamp(min=0))
        left = torch.floor(offset[..., 1] * (width - box_w + 1)).clamp(min=0.0).minimum((width - box_w).clamp(min=0))
        slots = torch.arange(boxes_max, device=device).view(1, -1)
        active = applied.view(-1, 1) & (slots < count.view(-1, 1)) & fits.any(dim=2)
        boxes = torch.stack([left, top, left + box_w, top + box_h], dim=2)
        if self.mode == "pixel":
            values = _normal((batch, channels, height, width), **draw)
        elif self.mode == "rand":
            values = _normal((batch, boxes_max, channels), **draw)
        else:
            values = torch.zeros((batch, boxes_max, channels), device=device)
        return {"applied": applied, "active": active, "boxes": boxes, "values": values}

    def _erase(self, x: Tensor, active: Tensor, boxes: Tensor, values: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        rows = torch.arange(height, device=x.device).view(1, -1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1)
        if self.mode == "pixel":
            fill = mean + std * values.to(x.dtype).unsqueeze(2)  # B×C×1×H×W
        for k in range(boxes.shape[1]):
            x0, y0, x1, y1 = (edge.view(-1, 1, 1) for edge in boxes[:, k].unbind(1))
            inside = active[:, k].view(-1, 1, 1) & (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)  # B×H×W
            if self.mode != "pixel":
                fill = mean + std * values[:, k].to(x.dtype).view(x.shape[0], -1, 1, 1, 1)  # B×C×1×1×1
            x = torch.where(inside[:, None, None], fill, x)
        return x

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandomErasing")
        return _apply_where(x, params["applied"], self._erase, params["active"], params["boxes"], params["values"])
