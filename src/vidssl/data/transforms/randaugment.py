"""RandAugment for clips, batched on the device (:class:`RandAugment`), and its operations.

The policy is imgaug's ``iaa.RandAugment``, the one BEVT's SSv2 fine-tuning runs through
mmaction2's ``Imgaug`` pipeline step (``dict(type='Imgaug', transforms=[dict(type='RandAugment',
n=4, m=7)])`` in ``swin_base_patch244_window1677_bevt_finetune_ssv2.py``). It is not
torchvision's or timm's RandAugment. The main differences are that magnitudes run on a 0–30
scale, so m = 7 is mild, and that the list has 18 operations, adding invert, cutout, blur and
smooth. imgaug also always runs a small random crop of every edge first, and mirrors half the
images (see ``flip_p``).

mmaction2 freezes the augmenter once per video (``to_deterministic()``) and then runs it on every
frame. So all frames of a clip get the same operations with the same parameters. Statistics that
depend on the data (autocontrast's range, equalize's histogram, contrast's mean grey) are
computed from each frame on its own. This module does the same: one draw per clip, shared by its
frames, and statistics per frame.

All operations take and return float ``B×C×T×H×W`` in [0, 1] with one parameter per clip (shape
``(B,)``). The seed works on uint8 frames through PIL. Here only the operations defined on 256
levels (posterize, solarize, equalize) round to levels. The others are computed in float without
the seed's rounding back to uint8 after each step, which differs by at most one level per step.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.data.transforms.colour import adjust_brightness, adjust_saturation, rgb_to_grayscale
from vidssl.data.transforms.core import (
    ClipTransform,
    Params,
    _apply_where,
    _check_clip,
    _draw_device,
    _gathers_rows,
    _per_sample,
    bernoulli,
    to_device_async,
    uniform,
)
from vidssl.data.transforms.geometry import crop_and_resize

# --------------------------------------------------------------------------------------
# operations on float B×C×T×H×W in [0, 1]


def _levels(x: Tensor) -> Tensor:
    """The 256 uint8 levels a float clip in [0, 1] stands for (as floats 0..255)."""
    return (x * 255.0).round().clamp_(0.0, 255.0)


def invert(x: Tensor) -> Tensor:
    """``1 - x`` (PIL's ``ImageOps.invert``)."""
    return 1.0 - x


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the top ``bits`` (B,) bits of each 8-bit level (PIL's ``ImageOps.posterize``).

    8 bits returns the clip untouched, even when its values fall between levels."""
    step = _per_sample(torch.pow(2.0, 8.0 - bits.to(x.dtype)))
    levels = _levels(x)
    out = (levels - torch.remainder(levels, step)) / 255.0
    return torch.where(_per_sample(bits >= 8), x, out)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert the values whose 8-bit level is ``>= threshold`` (B,), on 0..256 (PIL's ``ImageOps.solarize``;
    256 inverts nothing)."""
    return torch.where(_levels(x) >= _per_sample(threshold.to(x.dtype)), 1.0 - x, x)


def autocontrast(x: Tensor) -> Tensor:
    """Stretch each frame's channels to [0, 1]: ``(x - min) / (max - min)`` over H×W, per frame and
    channel (PIL's ``ImageOps.autocontrast`` with cutoff 0). A flat channel is left as it is."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (x - low) / span.clamp_min(1e-12), x)


def equalize(x: Tensor) -> Tensor:
    """Histogram-equalise each frame's channels on 256 levels, as PIL's ``ImageOps.equalize``.

    Per frame and channel: ``step = (pixels - count of the highest occupied level) // 255``; level
    ``i`` maps to ``(step // 2 + pixels below i) // step``, clipped to 255. A channel with
    ``step = 0`` (one level, or nearly) is left as it is. The histograms of all B·C·T frames come
    from one ``scatter_add`` (no host sync)."""
    batch, channels, frames, height, width = x.shape
    rows, pixels = batch * channels * frames, height * width
    levels = _levels(x).long().view(rows, pixels)
    ones = torch.ones((1, 1), dtype=torch.float32, device=x.device).expand(rows, pixels)
    # float32 counts are exact up to 2^24 pixels per frame
    hist = torch.zeros(rows, 256, dtype=torch.float32, device=x.device).scatter_add_(1, levels, ones)
    bins = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, bins, -1).amax(dim=1, keepdim=True)
    step = torch.floor((pixels - hist.gather(1, last)) / 255.0)
    below = hist.cumsum(dim=1) - hist
    lut = torch.floor((torch.floor(step / 2) + below) / step.clamp_min(1.0)).clamp_max_(255.0)
    out = (lut.gather(1, levels) / 255.0).view_as(x).to(x.dtype)
    return torch.where((step > 0).view(batch, channels, frames, 1, 1), out, x)


def adjust_contrast_per_frame(x: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``ImageEnhance.Contrast``: blend each frame with its mean grey (luma), clamp to [0, 1].

    Unlike :func:`~vidssl.data.transforms.colour.adjust_contrast` (the clip's mean), the mean is
    taken per frame, as the seed enhances frame by frame. PIL rounds the mean to a level; we don't."""
    grey = rgb_to_grayscale(x) if x.shape[1] == 3 else x
    mean = grey.mean(dim=(1, 3, 4), keepdim=True)
    f = _per_sample(factor.to(x.dtype))
    return (mean + f * (x - mean)).clamp_(0.0, 1.0)


def adjust_color(x: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``ImageEnhance.Color``: blend with the per-pixel grey, clamp (identity on one channel)."""
    return adjust_saturation(x, factor) if x.shape[1] == 3 else x


def filter_frames(x: Tensor, kernels: Tensor, border: Tensor) -> Tensor:
    """Filter every frame of clip b with its 5×5 kernel ``kernels[b]`` (``B×5×5``), as PIL's
    ``Image.filter``: pixels within ``border[b]`` (B,) of the frame's edge keep their value (PIL
    leaves the outer 1 pixel unfiltered for a 3×3 kernel, 2 for a 5×5); the
    result is clamped to [0, 1]. One grouped convolution for the whole batch."""
    batch, channels, frames, height, width = x.shape
    groups = batch * channels * frames
    weights = kernels.to(x.dtype).repeat_interleave(channels * frames, dim=0).unsqueeze(1)  # groups×1×5×5
    out = F.conv2d(x.reshape(1, groups, height, width), weights, padding=2, groups=groups).view_as(x)
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    edge = border.view(-1, 1, 1)
    inside = (rows >= edge) & (rows < height - edge) & (cols >= edge) & (cols < width - edge)  # B×H×W
    return torch.where(inside[:, None, None], out, x).clamp_(0.0, 1.0)


def affine_nearest(x: Tensor, inverse: Tensor, fill: float) -> Tensor:
    """Warp each clip with its affine map, nearest-neighbour, ``fill`` outside the frame (as PIL's
    ``Image.transform(AFFINE)``, which imgaug's ``pillike.Affine`` calls).

    ``inverse``: ``B×2×3``, maps an output pixel's centre (u + 0.5, v + 0.5) to input coordinates
    (pixels, origin at the top-left corner of the frame); the source pixel is the one that contains
    that point. The identity map returns the clip exactly. One gather for the whole batch."""
    batch, channels, frames, height, width = x.shape
    inverse = inverse.float()
    v, u = torch.meshgrid(torch.arange(height, device=x.device, dtype=torch.float32) + 0.5,
                          torch.arange(width, device=x.device, dtype=torch.float32) + 0.5, indexing="ij")
    points = torch.stack([u.flatten(), v.flatten(), torch.ones_like(u).flatten()])  # 3×HW
    source = torch.floor(inverse @ points)  # B×2×HW
    col, row = source[:, 0].long(), source[:, 1].long()
    valid = (col >= 0) & (col < width) & (row >= 0) & (row < height)  # B×HW
    index = (row.clamp(0, height - 1) * width + col.clamp(0, width - 1)).unsqueeze(1)
    flat = x.reshape(batch, channels * frames, height * width)
    out = flat.gather(2, index.expand(-1, channels * frames, -1))
    out = torch.where(valid.unsqueeze(1), out, torch.full((), fill, dtype=x.dtype, device=x.device))
    return out.view_as(x)


def cutout(x: Tensor, centre: Tensor, side: Tensor, fill: float) -> Tensor:
    """Fill one square per clip with ``fill``: side ``side`` (B,) pixels, centred at ``centre``
    (``B×2``, x and y as fractions of the width and height); the square may be cut by the frame's
    edges (imgaug's ``Cutout(squared=True)``; corners truncated to whole pixels as imgaug does)."""
    height, width = x.shape[-2:]
    cx, cy = centre[:, 0] * width, centre[:, 1] * height
    half = side / 2
    x0, x1 = torch.floor(cx - half).view(-1, 1, 1), torch.floor(cx + half).view(-1, 1, 1)
    y0, y1 = torch.floor(cy - half).view(-1, 1, 1), torch.floor(cy + half).view(-1, 1, 1)
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return torch.where(inside[:, None, None], torch.full((), fill, dtype=x.dtype, device=x.device), x)


# --------------------------------------------------------------------------------------
# the policy

#: imgaug's RandAugment operations, in imgaug's order. The codes stored in ``params["ops"]`` index this tuple.
RANDAUGMENT_OPS = (
    "identity", "autocontrast", "equalize", "invert", "rotate", "posterize", "solarize", "color", "contrast",
    "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y", "cutout", "blur", "smooth",
)
#: Operations whose strength does not depend on the magnitude (not the identity at magnitude 0).
MAGNITUDE_FREE_OPS = ("autocontrast", "equalize", "invert", "blur", "smooth")
_AFFINE_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_FILTER_OPS = ("sharpness", "blur", "smooth")
_CODE = {name: code for code, name in enumerate(RANDAUGMENT_OPS)}

# imgaug's value of each operation at the top of the magnitude scale (``_create_main_augmenters_list``)
_ROTATE_DEG = 30.0
_SHEAR_DEG = math.degrees(0.3)  # 17.19°, about the top-left corner
_TRANSLATE = 0.33  # of the frame's side
_POSTERIZE_BITS_REMOVED = 6  # 8 - floor(6·m/30) bits kept
_SOLARIZE_LEVELS = 256  # threshold 256 - floor(256·m/30)
_ENHANCE = 0.9  # factor 1 ± 0.9·m/30, clipped to [0.1, 1.9]
_CUTOUT_SIDE = 20 / 32  # of the frame's height
_EDGE_CROP_REFERENCE = 224  # imgaug crops U(0, m)/224 of the frame from each edge


def _affine_inverse(op: Tensor, degrees: Tensor, shift: Tensor, height: int, width: int) -> Tensor:
    """``B×2×3`` maps from output to input pixel coordinates for the affine operations (the identity
    for the other clips). ``degrees``: signed rotation or shear angle; ``shift``: signed translation
    as a fraction of the side. Rotation is about the frame's centre, shear about its top-left corner
    (imgaug's ``pillike.Affine`` centres)."""
    batch = op.shape[0]
    inverse = torch.zeros(batch, 2, 3, device=op.device)
    inverse[:, 0, 0] = inverse[:, 1, 1] = 1.0
    radians = torch.deg2rad(degrees.float())
    cos, sin = torch.cos(radians), torch.sin(radians)
    cx, cy = width / 2, height / 2
    # rotate by θ about (cx, cy): the source point is the output point rotated by -θ about it
    rotation = torch.stack([
        torch.stack([cos, sin, cx - cos * cx - sin * cy], dim=1),
        torch.stack([-sin, cos, cy + sin * cx - cos * cy], dim=1),
    ], dim=1)
    inverse = torch.where((op == _CODE["rotate"]).view(-1, 1, 1), rotation, inverse)
    shear = torch.tan(radians)
    inverse[:, 0, 1] = torch.where(op == _CODE["shear_x"], -shear, inverse[:, 0, 1])
    inverse[:, 1, 0] = torch.where(op == _CODE["shear_y"], -shear, inverse[:, 1, 0])
    inverse[:, 0, 2] = torch.where(op == _CODE["translate_x"], -shift.float() * width, inverse[:, 0, 2])
    inverse[:, 1, 2] = torch.where(op == _CODE["translate_y"], -shift.float() * height, inverse[:, 1, 2])
    return inverse


def _filter_kernels(op: Tensor, factor: Tensor) -> tuple[Tensor, Tensor]:
    """``B×5×5`` kernels and border widths (B,) for the filter operations (a delta elsewhere).

    Sharpness is PIL's blend of the frame with its SMOOTH-filtered copy, ``f·x + (1 - f)·smooth(x)``,
    i.e. one 3×3 kernel; blur is PIL's BLUR (5×5 ring), smooth PIL's SMOOTH."""
    # PIL's ImageFilter kernels, built on the device (a copy from pageable host memory would wait for the GPU)
    device = op.device
    delta = torch.zeros(5, 5, device=device)
    delta[2, 2] = 1.0
    smooth = torch.zeros(5, 5, device=device)  # SMOOTH: 1 1 1 / 1 5 1 / 1 1 1, over 13
    smooth[1:4, 1:4] = 1.0 / 13.0
    smooth[2, 2] = 5.0 / 13.0
    blur = torch.full((5, 5), 1.0 / 16.0, device=device)  # BLUR: the ring of a 5×5 square, over 16
    blur[1:4, 1:4] = 0.0
    f = factor.float().view(-1, 1, 1)
    sharpness = f * delta + (1.0 - f) * smooth
    kernels = torch.where((op == _CODE["sharpness"]).view(-1, 1, 1), sharpness, delta.expand(op.shape[0], 5, 5))
    kernels = torch.where((op == _CODE["smooth"]).view(-1, 1, 1), smooth, kernels)
    kernels = torch.where((op == _CODE["blur"]).view(-1, 1, 1), blur, kernels)
    border = torch.where(op == _CODE["blur"], 2, 1)
    return kernels, border


class RandAugment(ClipTransform):
    """imgaug's RandAugment on clips: per clip, an edge crop, then ``num_ops`` distinct operations in
    a random order, with the same operations and parameters on every frame.

    Per clip, in order (imgaug's ``RandAugment(n, m)``):

    1. mirror with probability ``flip_p``. imgaug always mirrors with p 0.5 here, but the default
       is 0; see below;
    2. ``edge_crop``: cut U(0, m)/224 of the frame from each of the four edges (drawn independently,
       whole pixels) and resize back to H×W (bilinear);
    3. ``num_ops`` operations drawn without replacement from ``ops`` and run in a random order. At
       magnitude m on the 0..``magnitude_max`` (30) scale, with level = m / 30 and s = a random sign
       per operation:

       - identity, autocontrast, equalize, invert, blur, smooth: these do not depend on m;
       - rotate s·30°·level (about the centre); shear_x / shear_y s·17.19°·level (about the top-left
         corner); translate_x / translate_y s·0.33·level of the side. All of them nearest-neighbour,
         filled with ``fill``;
       - posterize to 8 - floor(6·m/30) bits; solarize (invert) the levels >= 256 - floor(256·m/30);
       - color, contrast, brightness, sharpness: factor 1 + s·0.9·level clipped to [0.1, 1.9];
       - cutout: one square of side 20/32·level of the height, centred anywhere, filled with ``fill``.

    ``magnitude_std > 0`` draws each operation's magnitude from N(m, std) clipped to [0, 30] (timm's
    ``mstd``). imgaug and BEVT use a fixed m, which is 0 here. At m = 7 (BEVT SSv2): rotate ±7°,
    shear ±4.0°, translate ±7.7 %, posterize to 7 bits, solarize levels 197 and up, factors 0.79 / 1.21,
    cutout side 14.6 % of the height, edge crops of up to 3.1 % per side.

    Departures from the seed. Flip: imgaug's RandAugment mirrors half the images before its
    operations, so BEVT's SSv2 fine-tuning mirrored half its clips even though its config sets
    ``flip_ratio=0``. SSv2 labels name directions ("from left to right"), so a mirrored clip can carry
    the wrong label. vidssl does not mirror by default, and ``flip_p=0.5`` reproduces the seed.
    Geometry is not pixel-exact with PIL's (centre and rounding conventions), and the seed's uint8
    rounding between operations is not reproduced (see the module docstring).

    ``B×C×T×H×W`` float in [0, 1] → the same shape, dtype and range.

    Example:
        >>> augment = RandAugment(num_ops=4, magnitude=7)
        >>> augment(torch.rand(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 4, 32, 32])
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0, *, magnitude_max: float = 30.0,
                 magnitude_std: float = 0.0, ops: Sequence[str] = RANDAUGMENT_OPS, edge_crop: bool = True,
                 flip_p: float = 0.0, fill: float = 128 / 255):
        super().__init__()
        ops = tuple(ops)
        unknown = [name for name in ops if name not in _CODE]
        if unknown:
            raise ValueError(f"RandAugment: unknown operation(s) {unknown}; known: {', '.join(RANDAUGMENT_OPS)}")
        if len(set(ops)) != len(ops) or not ops:
            raise ValueError(f"RandAugment: ops must be distinct and not empty, got {list(ops)}")
        if not 0 <= int(num_ops) <= len(ops) or int(num_ops) != num_ops:
            raise ValueError(f"RandAugment: num_ops must be an integer in [0, {len(ops)}] (the number of ops), "
                             f"got {num_ops}")
        if not magnitude_max > 0:
            raise ValueError(f"RandAugment: magnitude_max must be > 0, got {magnitude_max}")
        if not 0 <= magnitude <= magnitude_max:
            raise ValueError(f"RandAugment: magnitude must be in [0, magnitude_max={magnitude_max}], got {magnitude}")
        if not 0 <= magnitude_std < math.inf:
            raise ValueError(f"RandAugment: magnitude_std must be finite and >= 0, got {magnitude_std}")
        if not 0 <= flip_p <= 1:
            raise ValueError(f"RandAugment: flip_p must be in [0, 1], got {flip_p}")
        if not 0 <= fill <= 1:
            raise ValueError(f"RandAugment: fill must be in [0, 1] (the clip's value range), got {fill}")
        self.num_ops, self.magnitude, self.magnitude_max = int(num_ops), float(magnitude), float(magnitude_max)
        self.magnitude_std, self.ops, self.edge_crop = float(magnitude_std), ops, bool(edge_crop)
        self.flip_p, self.fill = float(flip_p), float(fill)

    def draw(self, shape, device, generator=None) -> Params:
        """``flip`` (B,), ``boxes`` ``B×4`` edge-crop boxes (x0, y0, x1, y1), ``ops`` ``B×n`` operation
        codes (indices into :data:`RANDAUGMENT_OPS`, in the order they run), ``magnitude``, ``sign``
        ``B×n`` and ``centre`` ``B×n×2`` (cutout)."""
        batch, height, width = shape[0], shape[-2], shape[-1]
        n = self.num_ops
        draw = dict(device=device, generator=generator)
        params: Params = {"flip": bernoulli(batch, self.flip_p, **draw)}
        if self.edge_crop:
            cut = uniform((batch, 4), 0.0, self.magnitude / _EDGE_CROP_REFERENCE, **draw)  # left, top, right, bottom
            left, top = torch.round(cut[:, 0] * width), torch.round(cut[:, 1] * height)
            right, bottom = width - torch.round(cut[:, 2] * width), height - torch.round(cut[:, 3] * height)
            params["boxes"] = torch.stack([left, top, right, bottom], dim=1)
        # a random permutation of the allowed ops per clip; its first n are n distinct ops in a random order
        pick = torch.argsort(uniform((batch, len(self.ops)), 0.0, 1.0, **draw), dim=1)[:, :n]
        codes = to_device_async(torch.tensor([_CODE[name] for name in self.ops]), device)
        params["ops"] = codes[pick]
        magnitude = torch.full((batch, n), self.magnitude, device=device)
        if self.magnitude_std > 0:
            noise = torch.randn((batch, n), generator=generator, device=_draw_device(generator, device)).to(device)
            magnitude = (magnitude + self.magnitude_std * noise).clamp_(0.0, self.magnitude_max)
        params["magnitude"] = magnitude
        params["sign"] = torch.where(uniform((batch, n), 0.0, 1.0, **draw) < 0.5, -1.0, 1.0)
        params["centre"] = uniform((batch, n, 2), 0.0, 1.0, **draw)
        return params

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "RandAugment")
        if self.flip_p > 0:
            x = _apply_where(x, params["flip"], lambda clip: clip.flip(-1))
        if self.edge_crop:
            x = crop_and_resize(x, params["boxes"], tuple(x.shape[-2:]))
        elif _gathers_rows(x.device):
            x = x.clone()  # the CPU path writes the selected rows into x in place
        for slot in range(self.num_ops):
            x = self._apply_slot(x, params["ops"][:, slot], params["magnitude"][:, slot], params["sign"][:, slot],
                                 params["centre"][:, slot])
        return x

    def _apply_slot(self, x: Tensor, op: Tensor, magnitude: Tensor, sign: Tensor, centre: Tensor) -> Tensor:
        """Run operation ``op[b]`` (one per clip) on every clip. Each operation, or family of
        operations (the affine ones, the filters), is one batched call over the clips that drew it: on
        the CPU only those clips are computed, on an accelerator all of them and then selected
        (:func:`~vidssl.data.transforms.core._apply_where`)."""
        height, width = x.shape[-2:]
        ops = set(self.ops)
        level = magnitude / self.magnitude_max

        def where(x: Tensor, name: str, function, *values: Tensor) -> Tensor:
            return _apply_where(x, op == _CODE[name], function, *values, inplace=True)

        if "autocontrast" in ops:
            x = where(x, "autocontrast", autocontrast)
        if "equalize" in ops:
            x = where(x, "equalize", equalize)
        if "invert" in ops:
            x = where(x, "invert", invert)
        if "posterize" in ops:
            bits = 8 - torch.floor(magnitude * _POSTERIZE_BITS_REMOVED / self.magnitude_max).clamp(0, 6)
            x = where(x, "posterize", posterize, bits)
        if "solarize" in ops:
            removed = torch.floor(magnitude * _SOLARIZE_LEVELS / self.magnitude_max)
            threshold = (_SOLARIZE_LEVELS - removed).clamp(0, 256)
            x = where(x, "solarize", solarize, threshold)
        factor = (1.0 + sign * _ENHANCE * level).clamp(0.1, 1.9)
        for name, function in (("color", adjust_color), ("contrast", adjust_contrast_per_frame),
                               ("brightness", adjust_brightness)):
            if name in ops:
                x = where(x, name, function, factor)
        if "cutout" in ops:
            side = (_CUTOUT_SIDE * level).clamp(0.0, _CUTOUT_SIDE) * height
            x = where(x, "cutout", lambda clip, c, s: cutout(clip, c, s, self.fill), centre, side)
        affine = [name for name in _AFFINE_OPS if name in ops]
        if affine:
            selected = torch.stack([op == _CODE[name] for name in affine]).any(dim=0)
            degrees = sign * level * torch.where(op == _CODE["rotate"], _ROTATE_DEG, _SHEAR_DEG)
            inverse = _affine_inverse(op, degrees, sign * _TRANSLATE * level, height, width)
            x = _apply_where(x, selected, lambda clip, m: affine_nearest(clip, m, self.fill), inverse, inplace=True)
        filters = [name for name in _FILTER_OPS if name in ops]
        if filters:
            selected = torch.stack([op == _CODE[name] for name in filters]).any(dim=0)
            kernels, border = _filter_kernels(op, factor)
            x = _apply_where(x, selected, filter_frames, kernels, border, inplace=True)
        return x
