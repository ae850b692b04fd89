"""Colour clip transforms: grayscale and HSV helpers, torchvision's and TF's colour adjustments,
:class:`ColorJitter`, :class:`BraveColorAugment`, :class:`RandomGrayscale`."""

from __future__ import annotations

import torch
from torch import Tensor

from vidssl.data.transforms.core import (
    GRAY_WEIGHTS,
    ClipTransform,
    Params,
    _apply_where,
    _check_clip,
    _gathers_rows,
    _per_sample,
    bernoulli,
    uniform,
)

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
        # the other three ops in their order: a stable sort puts them first (a boolean index would sync the GPU)
        cheap_order = order.gather(1, (order == 3).long().sort(dim=1, stable=True).indices[:, :3])
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
