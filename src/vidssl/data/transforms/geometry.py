"""Geometric clip transforms: random resized crops, flips, test-time crops, short-side resizing."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.data.transforms.core import ClipTransform, Params, _apply_where, _check_clip, bernoulli, uniform

# --------------------------------------------------------------------------------------
# geometry


def crop_and_resize(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop one box per clip and resize it to ``size`` (h, w), the same box for every frame.

    ``x``: float ``B×C×T×H×W``; ``boxes``: ``B×4`` as (x0, y0, x1, y1) in pixel edges
    (the whole frame is (0, 0, W, H)). Uses ``torchvision.ops.roi_align`` (bilinear, with
    as many samples per output pixel as the box is larger, so shrinking is anti-aliased).
    Returns ``B×C×T×h×w``.
    """
    from torchvision.ops import roi_align

    batch, channels, frames, height, width = x.shape
    index = torch.arange(batch, device=x.device, dtype=x.dtype)[:, None]
    rois = torch.cat([index, boxes.to(x.dtype)], dim=1)
    out = roi_align(x.reshape(batch, channels * frames, height, width), rois, output_size=size,
                    spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return out.view(batch, channels, frames, *size)


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> Tensor:
    """torchvision's RandomResizedCrop box search, vectorised over the batch.

    Per clip, ``attempts`` candidates of area fraction U(scale) and log-uniform aspect
    ratio (w/h) in ``ratio``; the first that fits is used, at a uniform integer offset.
    If none fits, the largest centred crop whose aspect is clamped to ``ratio``.
    Returns ``B×4`` boxes (x0, y0, x1, y1) in whole pixels.
    """
    area = height * width
    target = uniform((batch, attempts), scale[0], scale[1], device=device, generator=generator) * area
    log_ratio = uniform((batch, attempts), math.log(ratio[0]), math.log(ratio[1]), device=device, generator=generator)
    aspect = torch.exp(log_ratio)
    crop_w = torch.round(torch.sqrt(target * aspect))
    crop_h = torch.round(torch.sqrt(target / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting attempt
    any_fit = fits.any(dim=1)
    crop_w = crop_w.gather(1, first).squeeze(1)
    crop_h = crop_h.gather(1, first).squeeze(1)
    # fallback: torchvision's centre crop with the aspect clamped to the range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    crop_w = torch.where(any_fit, crop_w, torch.full_like(crop_w, fallback_w))
    crop_h = torch.where(any_fit, crop_h, torch.full_like(crop_h, fallback_h))
    offset = uniform((batch, 2), 0.0, 1.0, device=device, generator=generator)
    x0 = torch.floor(offset[:, 0] * (width - crop_w + 1)).clamp(max=width - crop_w)
    y0 = torch.floor(offset[:, 1] * (height - crop_h + 1)).clamp(max=height - crop_h)
    x0 = torch.where(any_fit, x0, torch.full_like(x0, (width - fallback_w) // 2))
    y0 = torch.where(any_fit, y0, torch.full_like(y0, (height - fallback_h) // 2))
    return torch.stack([x0, y0, x0 + crop_w, y0 + crop_h], dim=1)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class RandomResizedCrop(ClipTransform):
    """Crop a random box of area fraction ``scale`` and aspect ``ratio`` (w/h), resize to ``size``.

    One box per clip, shared by its frames. ``B×C×T×H×W`` → ``B×C×T×h×w``.

    Example:
        >>> rrc = RandomResizedCrop(32, scale=(0.2, 0.766), ratio=(0.75, 1.333))
        >>> rrc(torch.rand(2, 3, 4, 64, 64)).shape
        torch.Size([2, 3, 4, 32, 32])
    """

    def __init__(self, size: int | Sequence[int], scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
        super().__init__()
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
        self.size, self.scale, self.ratio, self.attempts = _pair(size), tuple(scale), tuple(ratio), attempts

    def draw(self, shape, device, generator=None) -> Params:
        """``boxes``: ``B×4`` (x0, y0, x1, y1) crop boxes."""
        boxes = sample_crop_boxes(shape[0], shape[-2], shape[-1], self.scale, self.ratio,
                                  device=device, generator=generator, attempts=self.attempts)
        return {"boxes": boxes}

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size((*shape[:-2], *self.size))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandomResizedCrop")
        return crop_and_resize(x, params["boxes"], self.size)


class RandomHorizontalFlip(ClipTransform):
    """Mirror whole clips left-right with probability ``p``.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 1, 1, 4)
        >>> RandomHorizontalFlip(p=1.0)(x).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def draw(self, shape, device, generator=None) -> Params:
        return {"flip": bernoulli(shape[0], self.p, device=device, generator=generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandomHorizontalFlip")
        return _apply_where(x, params["flip"], lambda clip: clip.flip(-1))


def _crop_offsets(length: int, size: int, count: int, layout: str, along: bool) -> list[int]:
    if size > length:
        raise ValueError(f"crop size {size} is larger than the frame side {length}")
    if layout == "diagonal":  # BraVe: offsets linspace(0, dim - size, count), truncated
        return [int((length - size) * i / (count - 1)) if count > 1 else (length - size) // 2 for i in range(count)]
    centre = math.ceil((length - size) / 2)  # PySlowFast uniform_crop
    if not along:
        return [centre] * count
    if count == 1:
        return [centre]
    if count != 3:
        raise ValueError("the 'long_side' layout takes 1 or 3 crops")
    return [0, centre, length - size]


class SpatialCrops(ClipTransform):
    """Deterministic test-time crops: ``B×C×T×H×W`` → ``B×S×C×T×s×s`` (S = ``num_crops``).

    ``layout="long_side"`` (PySlowFast/GDT): left/centre/right along the long side (top/
    centre/bottom on portrait video), centred on the short side. ``layout="diagonal"``
    (BraVe): both offsets ``linspace(0, dim - size, 3)`` zipped, i.e. top-left, centre,
    bottom-right.

    Example:
        >>> SpatialCrops(32, 3)(torch.rand(2, 3, 4, 32, 48)).shape
        torch.Size([2, 3, 3, 4, 32, 32])
    """

    LAYOUTS = ("long_side", "diagonal")

    def __init__(self, size: int, num_crops: int = 3, layout: str = "long_side"):
        super().__init__()
        if layout not in self.LAYOUTS:
            raise ValueError(f"unknown crop layout {layout!r}; choose one of {', '.join(self.LAYOUTS)}")
        self.size, self.num_crops, self.layout = int(size), int(num_crops), layout

    def offsets(self, height: int, width: int) -> list[tuple[int, int]]:
        """(y0, x0) of each crop for a ``height×width`` frame."""
        ys = _crop_offsets(height, self.size, self.num_crops, self.layout, along=height > width)
        xs = _crop_offsets(width, self.size, self.num_crops, self.layout, along=width >= height)
        return list(zip(ys, xs))

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size((shape[0], self.num_crops, *shape[1:-2], self.size, self.size))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "SpatialCrops")
        s = self.size
        crops = [x[..., y : y + s, x0 : x0 + s] for y, x0 in self.offsets(x.shape[-2], x.shape[-1])]
        return torch.stack(crops, dim=1)


class CenterCrop(ClipTransform):
    """Central ``size×size`` crop: ``B×C×T×H×W`` → ``B×C×T×s×s``."""

    def __init__(self, size: int):
        super().__init__()
        self.crops = SpatialCrops(size, num_crops=1)

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size((*shape[:-2], self.crops.size, self.crops.size))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return self.crops(x)[:, 0]


class ResizeShortSide(ClipTransform):
    """Resize every frame so the short side is ``size`` (bilinear, anti-aliased)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def _out_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.size / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size((*shape[:-2], *self._out_size(shape[-2], shape[-1])))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "ResizeShortSide")
        batch, channels, frames, height, width = x.shape
        out_size = self._out_size(height, width)
        if out_size == (height, width):
            return x
        flat = x.reshape(batch, channels * frames, height, width)
        out = F.interpolate(flat, size=out_size, mode="bilinear", align_corners=False, antialias=True)
        return out.view(batch, channels, frames, *out_size)
