"""Batched video augmentation that runs on the batch's device (GPU in training, CPU in tests).

DataLoader workers only decode and resize (DESIGN.md, principle 1); everything random
happens here, on the whole batch at once:

* input: uint8 ``B×T×H×W×C`` (the collated clips), or float in [0, 1] with the same layout;
* :class:`ToFloatClip` turns it into float ``B×C×T×H×W`` in [0, 1]; every other transform
  takes and returns float ``B×C×T×H×W``;
* random parameters are drawn **per sample** and shared by **all frames of that clip**;
* every transform takes ``generator=`` (a :class:`torch.Generator`) so runs can be
  reproduced; draws happen on the generator's device and are moved to the batch's.

Pieces: :class:`RandomResizedCrop`, :class:`RandomHorizontalFlip`, :class:`ColorJitter`
(torchvision semantics, random order per sample), :class:`BraveColorAugment` (BraVe's
fixed-order TF-style variant), :class:`RandomGrayscale`, :class:`GaussianBlur`,
:class:`RandConv`, :class:`Normalize`, :class:`CenterCrop`, :class:`SpatialCrops`,
:class:`Compose`; ready-made pipelines: :func:`byol_video_augment`,
:func:`brave_narrow_augment`, :func:`brave_broad_augment`, :func:`eval_transform`.

Example:
    >>> import torch
    >>> clips = torch.randint(0, 256, (4, 8, 64, 80, 3), dtype=torch.uint8)  # B×T×H×W×C
    >>> augment = byol_video_augment(56)
    >>> augment(clips, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 8, 56, 56])
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale and tf.image.rgb_to_grayscale
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# --------------------------------------------------------------------------------------
# random draws


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def uniform(
    shape: Sequence[int] | int,
    low: float,
    high: float,
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Float32 samples from U[low, high) of ``shape`` on ``device``, drawn with ``generator``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    values = torch.rand(shape, generator=generator, device=_draw_device(generator, device))
    return (values * (high - low) + low).to(device)


def bernoulli(size: int, p: float, *, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """Bool tensor ``(size,)``: True with probability ``p``."""
    return uniform(size, 0.0, 1.0, device=device, generator=generator) < p


def _per_sample(values: Tensor) -> Tensor:
    """(B,) → (B, 1, 1, 1, 1), to broadcast over C×T×H×W."""
    return values.view(-1, 1, 1, 1, 1)


def _check_clip(x: Tensor, name: str) -> None:
    if x.dim() != 5 or not x.is_floating_point():
        raise ValueError(f"{name} expects a float B×C×T×H×W tensor, got {tuple(x.shape)} {x.dtype}")


def _gathers_rows(device: torch.device) -> bool:
    """Whether :func:`_apply_where` computes only the selected rows on ``device`` (the CPU)."""
    return device.type == "cpu"


def _apply_where(x: Tensor, selected: Tensor, function, *params: Tensor, inplace: bool = False) -> Tensor:
    """Return ``x`` with ``function(x[b], params[b])`` in the rows where ``selected`` is True.

    On the CPU only the selected rows are computed (gather/scatter; with ``inplace`` the
    rows are written into ``x`` itself, which the caller must own). On an accelerator all
    rows are computed and blended with ``torch.where``: indexing with a boolean mask would
    need the mask on the host, i.e. a device sync in the training step.
    """
    if _gathers_rows(x.device):
        index = selected.nonzero().squeeze(1)
        if index.numel() == 0:
            return x
        if index.numel() == x.shape[0]:
            return function(x, *params)
        rows = function(x.index_select(0, index), *(p.index_select(0, index) for p in params))
        return x.index_copy_(0, index, rows) if inplace else x.index_copy(0, index, rows)
    return torch.where(_per_sample(selected), function(x, *params), x)


# --------------------------------------------------------------------------------------
# base classes


Params = dict[str, Tensor]


class ClipTransform(nn.Module):
    """A batched clip transform on float ``B×C×T×H×W``.

    Split in two so a batch can be processed in pieces with the same result:
    :meth:`draw` makes the random parameters of every sample (tensors whose first
    dimension is B; only from the input *shape*), :meth:`apply` uses them. ``forward(x,
    generator)`` does both. Deterministic transforms draw nothing.
    """

    def draw(self, shape: torch.Size, device: torch.device, generator: torch.Generator | None = None) -> Params:
        """Per-sample random parameters for an input of ``shape``."""
        return {}

    def apply(self, x: Tensor, params: Params) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def output_shape(self, shape: torch.Size) -> torch.Size:
        """Shape of the output for an input of ``shape`` (unchanged unless overridden)."""
        return shape

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(x, self.draw(x.shape, x.device, generator))


class Compose(ClipTransform):
    """Apply transforms in sequence, passing the same generator to each.

    Example:
        >>> t = Compose([ToFloatClip(), RandomHorizontalFlip(), Normalize(0.45, 0.225)])
        >>> t(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8)).shape
        torch.Size([2, 3, 4, 8, 8])
    """

    def __init__(self, transforms: Sequence[ClipTransform], cpu_chunk: int | None = 4):
        """``cpu_chunk``: on the CPU, run the transforms on this many clips at a time (all
        parameters are drawn for the whole batch first, so the result is the same). Small
        pieces keep the temporaries in the allocator's cache; whole-batch temporaries of tens
        of MB are fresh pages each time and cost about 2× on the CPU. None: whole batch."""
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.cpu_chunk = cpu_chunk

    def draw(self, shape: torch.Size, device: torch.device, generator: torch.Generator | None = None) -> Params:
        params: Params = {}
        for index, transform in enumerate(self.transforms):
            for key, value in transform.draw(shape, device, generator).items():
                params[f"{index}.{key}"] = value
            shape = transform.output_shape(shape)
        return params

    def output_shape(self, shape: torch.Size) -> torch.Size:
        for transform in self.transforms:
            shape = transform.output_shape(shape)
        return shape

    def _apply_all(self, x: Tensor, params: Params) -> Tensor:
        for index, transform in enumerate(self.transforms):
            prefix = f"{index}."
            own = {key[len(prefix):]: value for key, value in params.items() if key.startswith(prefix)}
            x = transform.apply(x, own)
        return x

    def apply(self, x: Tensor, params: Params) -> Tensor:
        batch = x.shape[0]
        if x.device.type != "cpu" or not self.cpu_chunk or batch <= self.cpu_chunk:
            return self._apply_all(x, params)
        pieces = []
        for start in range(0, batch, self.cpu_chunk):
            rows = slice(start, start + self.cpu_chunk)
            pieces.append(self._apply_all(x[rows], {key: value[rows] for key, value in params.items()}))
        return torch.cat(pieces)


class ToFloatClip(ClipTransform):
    """uint8 ``B×T×H×W×C`` in [0, 255] (or float in [0, 1]) → float32 ``B×C×T×H×W`` in [0, 1].

    Example:
        >>> ToFloatClip()(torch.full((1, 2, 4, 4, 3), 255, dtype=torch.uint8)).amax().item()
        1.0
    """

    def output_shape(self, shape: torch.Size) -> torch.Size:
        batch, frames, height, width, channels = shape
        return torch.Size((batch, channels, frames, height, width))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if x.dim() != 5 or x.shape[-1] not in (1, 3):
            raise ValueError(f"expected clips B×T×H×W×C with C in (1, 3), got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif not x.is_floating_point():
            raise ValueError(f"expected uint8 or float clips, got {x.dtype}")
        return x.permute(0, 4, 1, 2, 3).contiguous()


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


# --------------------------------------------------------------------------------------
# colour


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma of ``B×3×…`` RGB → ``B×1×…`` (ITU-R 601-2 weights 0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _hue_and_range(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue in sixths of a turn, [0, 6), max and max - min over the channels of ``B×3×…``.

    Grey pixels (max = min) get hue 0. Ties for the max resolve r, then g, then b, as in
    torchvision and TF.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inverse = chroma.clamp_min(1e-12).reciprocal_()  # grey pixels: 0 · 1e12 = 0, no NaN
    hue6 = torch.where(
        maxc == r,
        (g - b).mul_(inverse),
        torch.where(maxc == g, (b - r).mul_(inverse).add_(2.0), (r - g).mul_(inverse).add_(4.0)),
    )
    return hue6.remainder_(6.0), maxc, chroma


def _rgb_from_hue(hue6: Tensor, value: Tensor, chroma: Tensor) -> Tensor:
    """RGB from hue (sixths of a turn, any real), value (max) and chroma (max - min).

    The fully saturated colour of the hue is ``(clamp(|h-3|-1), clamp(2-|h-2|), clamp(2-|h-4|))``
    on [0, 1]; the pixel is ``(v - c) + c · colour``.
    """
    hue6 = torch.remainder(hue6, 6.0)
    base = value - chroma
    out = torch.empty((value.shape[0], 3, *value.shape[1:]), dtype=value.dtype, device=value.device)
    torch.addcmul(base, chroma, (hue6 - 3.0).abs_().sub_(1.0).clamp_(0.0, 1.0), out=out[:, 0])
    torch.addcmul(base, chroma, (hue6 - 2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0), out=out[:, 1])
    torch.addcmul(base, chroma, (hue6 - 4.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0), out=out[:, 2])
    return out


def rgb_to_hsv(x: Tensor) -> Tensor:
    """``B×3×…`` RGB → HSV with hue in [0, 1). S is 0 where V <= 0 (as TF and torchvision)."""
    hue6, value, chroma = _hue_and_range(x)
    positive = value > 0
    saturation = torch.where(positive, chroma / torch.where(positive, value, 1.0), 0.0)
    return torch.stack([hue6 / 6.0, saturation, value], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`: ``B×3×…`` HSV → RGB."""
    hue, saturation, value = x.unbind(1)
    return _rgb_from_hue(hue * 6.0, value, saturation * value)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision: multiply by ``factor`` (B,), clamp to [0, 1]."""
    return (x * _per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision: blend with the clip's mean luma (over all its frames, as PySlowFast's
    colour jitter on the frames stacked into one image), clamp to [0, 1]."""
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3, 4), keepdim=True)
    f = _per_sample(factor)
    return (f * x + (1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision: blend with the per-pixel luma, clamp to [0, 1]."""
    f = _per_sample(factor)
    return (f * x + (1.0 - f) * rgb_to_grayscale(x)).clamp_(0.0, 1.0)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` (B,) turns (in [-0.5, 0.5]) in HSV space.

    Same result as an RGB→HSV→RGB round trip (torchvision, TF), computed directly from
    hue, max and max - min. Pixels with max <= 0 have S = 0 in HSV and come back grey.
    """
    hue6, value, chroma = _hue_and_range(x)
    chroma = chroma.masked_fill_(value <= 0, 0.0)
    return _rgb_from_hue(hue6.add_(6.0 * shift.view(-1, *([1] * (x.dim() - 2)))), value, chroma)


def _factor_range(strength: float, name: str) -> tuple[float, float]:
    if strength < 0:
        raise ValueError(f"{name} must be >= 0, got {strength}")
    return max(0.0, 1.0 - strength), 1.0 + strength


class ColorJitter(ClipTransform):
    """torchvision's ColorJitter with per-clip parameters, applied with probability ``p``.

    Brightness/contrast/saturation factors are drawn from [max(0, 1-s), 1+s], the hue
    shift from [-hue, hue]; the four operations run in a random order drawn **per clip**
    (torchvision draws one order per call, i.e. per clip there too).

    Example:
        >>> jitter = ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8)
        >>> jitter(torch.rand(2, 3, 4, 8, 8), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 4, 8, 8])
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.0, p: float = 1.0):
        super().__init__()
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.ranges = (
            _factor_range(brightness, "brightness"),
            _factor_range(contrast, "contrast"),
            _factor_range(saturation, "saturation"),
        )
        self.hue, self.p = hue, p

    _CHEAP_OPS = (adjust_brightness, adjust_contrast, adjust_saturation)

    def draw(self, shape, device, generator=None) -> Params:
        """``applied`` (B,), ``factors`` B×3 (brightness, contrast, saturation), ``shift`` (B,)
        and ``order`` B×4 (op ids by position; 0-2 as in ``factors``, 3 = hue)."""
        batch = shape[0]
        draw = dict(device=device, generator=generator)
        applied = bernoulli(batch, self.p, **draw)
        factors = torch.stack([uniform(batch, low, high, **draw) for low, high in self.ranges], dim=1)
        shift = uniform(batch, -self.hue, self.hue, **draw)
        order = torch.argsort(uniform((batch, 4), 0.0, 1.0, **draw), dim=1)
        return {"applied": applied, "factors": factors, "shift": shift, "order": order}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "ColorJitter")
        batch, device = x.shape[0], x.device
        applied, shift, order = params["applied"], params["shift"], params["order"]
        factors = params["factors"].unbind(1)
        # Run the hue (expensive: an HSV round trip) once for everyone: the cheap ops that
        # come before it in a clip's order run in a first pass, the others after it.
        if _gathers_rows(device):
            x = x.clone()  # rows are then replaced in place, op by op
        hue_position = (order == 3).int().argmax(dim=1)
        cheap_order = order[order != 3].view(batch, 3)
        positions = torch.arange(3, device=device)[None]
        before = positions < hue_position[:, None]  # B×3
        for phase in (before, ~before):
            for slot in range(3):
                for op_id, op in enumerate(self._CHEAP_OPS):
                    if self.ranges[op_id] == (1.0, 1.0):
                        continue
                    selected = applied & phase[:, slot] & (cheap_order[:, slot] == op_id)
                    x = _apply_where(x, selected, op, factors[op_id], inplace=True)
            if phase is before and self.hue > 0:
                x = _apply_where(x, applied, adjust_hue, shift, inplace=True)
        return x


def tf_adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """tf.image.adjust_saturation: scale S in HSV space and clip it to [0, 1].

    Hue and V are kept, so each channel moves away from V in proportion:
    ``v - (v - c) · min(f, v / (v - min))``, which is the HSV round trip without the hue.
    Pixels with V <= 0 have S = 0 and come back grey (V), as in TF.
    """
    value, _ = x.max(dim=1, keepdim=True)
    minimum, _ = x.min(dim=1, keepdim=True)
    chroma = value - minimum
    f = factor.view(-1, *([1] * (x.dim() - 1)))
    limit = value / torch.where(chroma > 0, chroma, torch.ones_like(chroma))  # scale at which S reaches 1
    scale = torch.where(value > 0, torch.minimum(f, limit), 0.0)
    return value - (value - x) * scale


def tf_adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """tf.image.adjust_contrast on a video: ``(x - mean) * f + mean`` with the mean taken
    per frame and per channel (TF treats the T frames as a batch of images). No clipping."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * _per_sample(factor) + mean


class BraveColorAugment(ClipTransform):
    """BraVe's colour augmentation (``augmentations.py``), with probability ``p`` per clip.

    Fixed order, one draw per clip: additive brightness U(-32/255, 32/255), saturation
    ×U(0.6, 1.4) (HSV), contrast ×U(0.6, 1.4) (per-frame mean), hue +U(-0.2, 0.2), then
    clip to [0, 1]. Like TF, nothing is clipped between the steps.
    """

    def __init__(self, p: float = 0.8, brightness: float = 32 / 255, saturation=(0.6, 1.4),
                 contrast=(0.6, 1.4), hue: float = 0.2):
        super().__init__()
        self.p, self.brightness, self.saturation, self.contrast, self.hue = p, brightness, saturation, contrast, hue

    def _augment(self, x: Tensor, delta: Tensor, saturation: Tensor, contrast: Tensor, shift: Tensor) -> Tensor:
        x = x + _per_sample(delta)
        x = tf_adjust_saturation(x, saturation)
        x = tf_adjust_contrast(x, contrast)
        x = adjust_hue(x, shift)
        return x.clamp(0.0, 1.0)

    def draw(self, shape, device, generator=None) -> Params:
        batch = shape[0]
        draw = dict(device=device, generator=generator)
        return {
            "applied": bernoulli(batch, self.p, **draw),
            "delta": uniform(batch, -self.brightness, self.brightness, **draw),
            "saturation": uniform(batch, *self.saturation, **draw),
            "contrast": uniform(batch, *self.contrast, **draw),
            "shift": uniform(batch, -self.hue, self.hue, **draw),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "BraveColorAugment")
        values = [params[key] for key in ("delta", "saturation", "contrast", "shift")]
        return _apply_where(x, params["applied"], self._augment, *values)


class RandomGrayscale(ClipTransform):
    """Replace a clip by its luma (tiled to 3 channels) with probability ``p``.

    Example:
        >>> x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1, 1)
        >>> RandomGrayscale(p=1.0)(x).flatten().tolist()
        [0.2989000082015991, 0.2989000082015991, 0.2989000082015991]
    """

    def __init__(self, p: float = 0.2):
        super().__init__()
        self.p = p

    def draw(self, shape, device, generator=None) -> Params:
        return {"gray": bernoulli(shape[0], self.p, device=device, generator=generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandomGrayscale")
        return _apply_where(x, params["gray"], lambda clip: rgb_to_grayscale(clip).expand_as(clip).contiguous())


# --------------------------------------------------------------------------------------
# filters


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1-D Gaussian kernels, one per sigma: ``(B,)`` → ``B×kernel_size``."""
    radius = kernel_size // 2
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    kernels = torch.exp(-(taps[None] ** 2) / (2.0 * sigma[:, None].float() ** 2))
    return kernels / kernels.sum(dim=1, keepdim=True)


def blur_kernel_size_for(width: int) -> int:
    """BraVe's blur size for a crop of ``width``: ``width // 10`` rounded up to odd taps (23 for 224, 11 for 112)."""
    return 2 * ((width // 10) // 2) + 1


def separable_blur(x: Tensor, kernels: Tensor, padding: str = "reflect") -> Tensor:
    """Blur each clip with its own 1-D kernel along H then W. ``x``: ``B×C×T×H×W``, ``kernels``: ``B×K``."""
    batch, channels, frames, height, width = x.shape
    size = kernels.shape[1]
    radius = size // 2
    groups = batch * channels * frames
    weights = kernels.to(x.dtype).repeat_interleave(channels * frames, dim=0)  # groups×K
    flat = x.reshape(1, groups, height, width)
    mode = {"reflect": "reflect", "zeros": "constant"}[padding]
    flat = F.pad(flat, (0, 0, radius, radius), mode=mode)
    flat = F.conv2d(flat, weights.view(groups, 1, size, 1), groups=groups)
    flat = F.pad(flat, (radius, radius, 0, 0), mode=mode)
    flat = F.conv2d(flat, weights.view(groups, 1, 1, size), groups=groups)
    return flat.view(batch, channels, frames, height, width)


class GaussianBlur(ClipTransform):
    """Gaussian blur with a per-clip sigma ~ U(``sigma``), applied with probability ``p``.

    Separable, ``kernel_size`` taps (odd). ``padding="reflect"`` as torchvision; BraVe pads
    with zeros (``"zeros"``). Clips that are not blurred are returned unchanged.

    Example:
        >>> blur = GaussianBlur(kernel_size=13, sigma=(0.1, 2.0), p=0.5)
        >>> blur(torch.rand(2, 3, 4, 16, 16)).shape
        torch.Size([2, 3, 4, 16, 16])
    """

    def __init__(self, kernel_size: int = 13, sigma=(0.1, 2.0), p: float = 0.5, padding: str = "reflect"):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if padding not in ("reflect", "zeros"):
            raise ValueError(f"padding must be 'reflect' or 'zeros', got {padding!r}")
        self.kernel_size, self.sigma, self.p, self.padding = kernel_size, tuple(sigma), p, padding

    def draw(self, shape, device, generator=None) -> Params:
        draw = dict(device=device, generator=generator)
        applied = bernoulli(shape[0], self.p, **draw)
        return {"applied": applied, "sigma": uniform(shape[0], *self.sigma, **draw)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "GaussianBlur")
        kernels = gaussian_kernels(params["sigma"], self.kernel_size)
        return _apply_where(x, params["applied"], lambda clip, k: separable_blur(clip, k, self.padding), kernels)


def _truncated_normal(shape: tuple[int, ...], *, device, generator) -> Tensor:
    """Standard normal truncated to [-2, 2] (TF's truncated_normal), by inverse CDF."""
    low = 0.5 * (1 + math.erf(-2 / math.sqrt(2)))
    u = uniform(shape, low, 1 - low, device=device, generator=generator)
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)


# std of a unit normal truncated at ±2: TF's he_normal divides by it so the weights keep std sqrt(2/fan_in)
_TRUNCATED_STD = 0.87962566103423978


class RandConv(ClipTransform):
    """BraVe's random convolution (broad video view), always applied.

    Per clip: a kernel side k uniform in ``kernel_sizes`` and a fresh C→C k×k kernel with
    He-normal (truncated) weights, std sqrt(2 / (k·k·C)); 'SAME' zero padding, no bias,
    the same kernel for every frame, no clipping afterwards. Kernels are embedded in the
    largest size so that the whole batch is one grouped convolution.
    """

    def __init__(self, kernel_sizes: Sequence[int] = (1, 3, 5, 7, 9, 11)):
        super().__init__()
        if any(k % 2 == 0 or k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel sizes must be odd and positive, got {kernel_sizes}")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)

    def sample_kernels(self, batch: int, channels: int, device, generator=None) -> tuple[Tensor, Tensor]:
        """Kernel sides ``(B,)`` and weights ``B×C×C×K×K`` (K = largest side, zeros outside each k×k)."""
        draw = dict(device=device, generator=generator)
        sizes = torch.tensor(self.kernel_sizes, device=device)
        pick = torch.floor(uniform(batch, 0.0, 1.0, **draw) * len(self.kernel_sizes)).long()
        pick = pick.clamp(max=len(self.kernel_sizes) - 1)
        side = sizes[pick]
        largest = max(self.kernel_sizes)
        centre = largest // 2
        taps = torch.arange(largest, device=device)
        inside = (taps[None] - centre).abs() <= (side[:, None] // 2)  # B×K
        mask = (inside[:, :, None] & inside[:, None, :]).float()  # B×K×K
        std = torch.sqrt(2.0 / (side.float() ** 2 * channels)) / _TRUNCATED_STD
        weights = _truncated_normal((batch, channels, channels, largest, largest), **draw)
        weights = weights * std.view(-1, 1, 1, 1, 1) * mask[:, None, None]
        return side, weights

    def draw(self, shape, device, generator=None) -> Params:
        _, weights = self.sample_kernels(shape[0], shape[1], device, generator)
        return {"weights": weights}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandConv")
        batch, channels, frames, height, width = x.shape
        weights = params["weights"]
        largest = weights.shape[-1]
        flat = x.reshape(1, batch * channels, frames, height, width)
        kernel = weights.to(x.dtype).reshape(batch * channels, channels, 1, largest, largest)
        out = F.conv3d(flat, kernel, padding=(0, largest // 2, largest // 2), groups=batch)
        return out.view(batch, channels, frames, height, width)


class Normalize(ClipTransform):
    """``(x - mean) / std`` per channel; ``mean``/``std`` are scalars or one value per channel."""

    def __init__(self, mean: float | Sequence[float] = 0.45, std: float | Sequence[float] = 0.225):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1, 1), persistent=False)

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "Normalize")
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)


# --------------------------------------------------------------------------------------
# pipelines


KINETICS_MEAN, KINETICS_STD = 0.45, 0.225


def byol_video_augment(crop_size: int = 112, mean=KINETICS_MEAN, std=KINETICS_STD,
                       crop_scale: tuple[float, float] = (0.2, 0.766), flip_p: float = 0.5,
                       blur_p: float = 0.5) -> Compose:
    """PySlowFast ρBYOL / FGKVMemPred pretraining view (MoCo-v2 style), uint8 clips → normalised floats.

    Defaults are PySlowFast's: RandomResizedCrop area [0.2, 0.766], aspect [0.75, 1.333]; flip
    0.5; ColorJitter(0.6, 0.6, 0.6, hue 0.15) with p 0.8; grayscale 0.2; blur σ ∈ [0.1, 2] with
    p 0.5 (13 taps, enough for σ = 2; PySlowFast uses PIL's blur); normalise mean 0.45, std
    0.225. ``flip_p`` or ``blur_p`` of 0 leaves that step out.
    """
    steps: list[ClipTransform] = [ToFloatClip(), RandomResizedCrop(crop_size, scale=tuple(crop_scale),
                                                                   ratio=(0.75, 1.333))]
    if flip_p > 0:
        steps.append(RandomHorizontalFlip(flip_p))
    steps += [ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8), RandomGrayscale(0.2)]
    if blur_p > 0:
        steps.append(GaussianBlur(kernel_size=13, sigma=(0.1, 2.0), p=blur_p))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def _brave_view(crop_size: int) -> list[ClipTransform]:
    # BraVe's crop is tf.image.sample_distorted_bounding_box (area [0.3, 1], aspect [0.5, 2],
    # min_object_covered 0.3); we use the same ranges with torchvision's search and fallback.
    return [
        ToFloatClip(),
        RandomResizedCrop(crop_size, scale=(0.3, 1.0), ratio=(0.5, 2.0)),
        GaussianBlur(kernel_size=blur_kernel_size_for(crop_size), sigma=(0.1, 2.0), p=1.0, padding="zeros"),
        RandomHorizontalFlip(0.5),
        BraveColorAugment(p=0.8),
        RandomGrayscale(0.2),
    ]


def brave_narrow_augment(crop_size: int = 224) -> Compose:
    """BraVe's narrow video view (A4): crop, always-on blur, flip, colour p 0.8, colour drop p 0.2.

    Output in [0, 1]; BraVe uses no mean/std normalisation.
    """
    return Compose(_brave_view(crop_size))


def brave_broad_augment(crop_size: int = 112) -> Compose:
    """BraVe's broad video view: the narrow pipeline at the broad size, then RandConv (always)."""
    return Compose([*_brave_view(crop_size), RandConv()])


class EvalTransform(ClipTransform):
    """Test-time views: uint8 ``B×T×H×W×C`` or ``B×K×T×H×W×C`` (K temporal clips) →
    float ``B×V×C×T×s×s`` with V = K·S views (view ``k·S + s`` = temporal clip k, crop s).

    Optionally resizes the short side first; normalises when ``mean``/``std`` are given.
    """

    def __init__(self, crop_size: int, num_spatial_crops: int = 1, layout: str = "long_side",
                 short_side: int | None = None, mean=KINETICS_MEAN, std=KINETICS_STD):
        super().__init__()
        self.to_float = ToFloatClip()
        self.resize = ResizeShortSide(short_side) if short_side else None
        self.crops = SpatialCrops(crop_size, num_spatial_crops, layout)
        self.normalize = Normalize(mean, std) if mean is not None else None

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if x.dim() == 5:
            x = x.unsqueeze(1)
        if x.dim() != 6:
            raise ValueError(f"expected B×T×H×W×C or B×K×T×H×W×C clips, got shape {tuple(x.shape)}")
        batch, clips = x.shape[:2]
        x = self.to_float(x.flatten(0, 1))
        if self.resize is not None:
            x = self.resize(x)
        x = self.crops(x)  # (B·K)×S×C×T×s×s
        if self.normalize is not None:
            x = self.normalize(x.flatten(0, 1)).view_as(x)
        return x.reshape(batch, clips * x.shape[1], *x.shape[2:])


def eval_transform(crop_size: int, num_spatial_crops: int = 1, layout: str = "long_side",
                   short_side: int | None = None, mean=KINETICS_MEAN, std=KINETICS_STD) -> EvalTransform:
    """Deterministic evaluation views (see :class:`EvalTransform`).

    PySlowFast/GDT: ``eval_transform(112, 3)``; BraVe: ``eval_transform(224, 3, "diagonal",
    short_side=256, mean=None)`` (BraVe divides by 255 only).

    Example:
        >>> views = eval_transform(32, num_spatial_crops=3)(torch.zeros(2, 5, 4, 32, 40, 3, dtype=torch.uint8))
        >>> views.shape  # 5 temporal clips × 3 crops
        torch.Size([2, 15, 3, 4, 32, 32])
    """
    return EvalTransform(crop_size, num_spatial_crops, layout, short_side, mean, std)


__all__ = [
    "BraveColorAugment", "CenterCrop", "ClipTransform", "ColorJitter", "Compose", "EvalTransform",
    "GaussianBlur", "Normalize", "RandConv", "RandomGrayscale", "RandomHorizontalFlip", "RandomResizedCrop",
    "ResizeShortSide", "SpatialCrops", "ToFloatClip", "adjust_brightness", "adjust_contrast", "adjust_hue",
    "adjust_saturation", "blur_kernel_size_for", "brave_broad_augment", "brave_narrow_augment",
    "byol_video_augment", "crop_and_resize", "eval_transform", "gaussian_kernels", "hsv_to_rgb",
    "rgb_to_grayscale", "rgb_to_hsv", "sample_crop_boxes", "separable_blur", "tf_adjust_contrast",
    "tf_adjust_saturation", "uniform", "bernoulli",
]
