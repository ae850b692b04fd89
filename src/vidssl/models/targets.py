"""Prediction targets for masked image / video modeling (BEVT and its tokenizer-free variants).

Every target is computed per *cell* of the prediction grid: a ``cell×cell``-pixel square of one
frame (BEVT: 16×16 px of a 224² crop = a 14×14 grid, reference §3.4–3.5). Inputs are frames in
[0, 1], ``B×C×T×H×W`` (clips) or ``B×C×H×W`` (images, treated as one frame); outputs are
``B×T×Gh×Gw×D`` (images ``B×1×Gh×Gw×D``).

- :func:`pixel_targets` — VideoMAE's normalised pixels: each cell's pixels, normalised per channel
  by the cell's own mean and (unbiased) standard deviation; ``D = 3·cell²``.
- :func:`hog_targets` — MaskFeat's HOG: unsigned gradient orientations in ``bins`` bins, magnitude
  weighted, summed over ``hog_cell``-pixel cells, each prediction cell's histograms (per colour
  channel) L2-normalised together; ``D = 3·bins·(cell/hog_cell)²``.
- :func:`lanczos_resize`, :func:`map_pixels` — the DALL-E tokenizer's input: BEVT resizes the crop
  to 112² with Lanczos (``CopyResize`` → ``mmcv.imresize(interpolation='lanczos')``, i.e. OpenCV's
  ``INTER_LANCZOS4``: 8 taps at the source scale, no anti-aliasing widening) and maps [0, 1] to
  [ε, 1-ε] with ε = 0.1 (``MapPixels``). Here the resize runs batched on the device as two matrix
  products whose weights are OpenCV's own (``kernel="opencv"``, the default) or PIL's anti-aliased
  Lanczos-3 (``kernel="pil"``); BEVT resized uint8 crops (rounded), we resize floats and clamp to [0, 1].
  Token targets themselves come from :mod:`vidssl.models.tokenizers`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def _frames(x: Tensor) -> tuple[Tensor, int]:
    """``B×C×T×H×W`` or ``B×C×H×W`` → (``(B·T)×C×H×W``, T)."""
    if x.dim() == 4:
        return x, 1
    if x.dim() != 5:
        raise ValueError(f"expected frames B×C×T×H×W or B×C×H×W, got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), t


def _check_cells(h: int, w: int, cell: int) -> None:
    if cell < 1 or h % cell or w % cell:
        raise ValueError(f"a {h}×{w} frame does not split into {cell}×{cell}-pixel cells; use a crop that is a multiple of {cell}")


def pixel_targets(x: Tensor, cell: int, eps: float = 1e-6) -> Tensor:
    """VideoMAE's per-cell normalised pixels: ``B×C×T×H×W`` in [0, 1] → ``B×T×Gh×Gw×(cell²·C)``.

    Example:
        >>> pixel_targets(torch.rand(2, 3, 4, 32, 32), 16).shape
        torch.Size([2, 4, 2, 2, 768])
    """
    frames, t = _frames(x)
    n, c, h, w = frames.shape
    _check_cells(h, w, cell)
    gh, gw = h // cell, w // cell
    cells = frames.view(n, c, gh, cell, gw, cell).permute(0, 2, 4, 3, 5, 1).reshape(n, gh, gw, cell * cell, c)
    mean = cells.mean(dim=-2, keepdim=True)
    std = cells.var(dim=-2, unbiased=True, keepdim=True).sqrt()
    normed = (cells - mean) / (std + eps)
    return normed.reshape(n // t, t, gh, gw, cell * cell * c)


def hog_targets(x: Tensor, cell: int, hog_cell: int = 8, bins: int = 9) -> Tensor:
    """MaskFeat-style HOG: ``B×C×T×H×W`` in [0, 1] → ``B×T×Gh×Gw×(C·bins·(cell/hog_cell)²)``.

    Gradients are central differences ([-1, 0, 1], zero padding) per colour channel; each pixel
    votes its magnitude into the nearer of ``bins`` unsigned orientation bins over [0, π) (hard
    assignment); votes are summed over ``hog_cell``² pixels and, per prediction cell and channel, the
    ``(cell/hog_cell)²·bins`` histogram is L2-normalised. (MaskFeat pools with a Gaussian window and
    normalises per HOG cell; both are choices of the same feature, recorded in docs/bevt.md.)

    Example:
        >>> hog_targets(torch.rand(1, 3, 2, 32, 32), 16).shape
        torch.Size([1, 2, 2, 2, 108])
    """
    frames, t = _frames(x)
    n, c, h, w = frames.shape
    _check_cells(h, w, cell)
    if cell % hog_cell:
        raise ValueError(f"the prediction cell ({cell} px) must be a multiple of the HOG cell ({hog_cell} px)")
    flat = frames.reshape(n * c, 1, h, w)
    kx = torch.tensor([[[[-1.0, 0.0, 1.0]]]], device=x.device, dtype=flat.dtype)
    gx = F.conv2d(flat, kx, padding=(0, 1))
    gy = F.conv2d(flat, kx.transpose(2, 3), padding=(1, 0))
    magnitude = torch.sqrt(gx**2 + gy**2)
    angle = torch.atan2(gy, gx).remainder(math.pi)  # unsigned orientation in [0, π)
    index = torch.floor(angle / math.pi * bins + 0.5).long().remainder(bins)  # nearest bin centre k·π/bins
    votes = torch.zeros(n * c, bins, h, w, device=x.device, dtype=flat.dtype).scatter_(1, index, magnitude)
    hist = F.avg_pool2d(votes, hog_cell, stride=hog_cell) * hog_cell**2  # sums: (n·c)×bins×h/hc×w/hc
    per = cell // hog_cell
    gh, gw = h // cell, w // cell
    hist = hist.view(n, c, bins, gh, per, gw, per).permute(0, 3, 5, 1, 4, 6, 2).reshape(n, gh, gw, c, per * per * bins)
    hist = F.normalize(hist, dim=-1)
    return hist.reshape(n // t, t, gh, gw, c * per * per * bins)


def map_pixels(x: Tensor, eps: float = 0.1) -> Tensor:
    """DALL-E's logit-Laplace input mapping of [0, 1] pixels to [ε, 1-ε] (BEVT ``MapPixels``).

    Example:
        >>> map_pixels(torch.tensor([0.0, 1.0])).tolist()
        [0.10000000149011612, 0.8999999761581421]
    """
    return (1 - 2 * eps) * x + eps


@lru_cache(maxsize=32)
def _lanczos_matrix(size_in: int, size_out: int, a: int = 3) -> Tensor:
    """``size_out×size_in`` resampling weights of PIL's Lanczos filter (support ``a``, widened by the
    scale when shrinking, weights normalised per output pixel)."""
    scale = size_in / size_out
    support = a * max(scale, 1.0)
    filter_scale = max(scale, 1.0)
    out = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        centre = (i + 0.5) * scale
        lo, hi = max(0, int(centre - support + 0.5)), min(size_in, int(centre + support + 0.5))
        positions = torch.arange(lo, hi, dtype=torch.float64)
        u = (positions - centre + 0.5) / filter_scale
        weights = torch.sinc(u) * torch.sinc(u / a) * (u.abs() < a)
        out[i, lo:hi] = weights / weights.sum()
    return out.float()


@lru_cache(maxsize=32)
def _opencv_lanczos4_matrix(size_in: int, size_out: int) -> Tensor:
    """``size_out×size_in`` weights of OpenCV's ``INTER_LANCZOS4`` resize (border handling included),
    read off by resizing the identity along one axis (the resize is linear and separable)."""
    import cv2
    import numpy as np

    resized = cv2.resize(np.eye(size_in, dtype=np.float32), (size_out, size_in), interpolation=cv2.INTER_LANCZOS4)
    return torch.from_numpy(np.ascontiguousarray(resized.T))


def lanczos_resize(x: Tensor, size: tuple[int, int], kernel: str = "opencv") -> Tensor:
    """Separable Lanczos resize of ``…×H×W`` to ``…×size``, batched on the device (two matrix products).

    ``kernel="opencv"``: OpenCV's ``INTER_LANCZOS4`` (what BEVT's mmcv ``imresize`` used);
    ``"pil"``: PIL's ``Image.LANCZOS``. No rounding to uint8 and no clamping (overshoot stays).

    Example:
        >>> lanczos_resize(torch.ones(1, 3, 224, 224), (112, 112)).sub(1).abs().max() < 1e-5
        tensor(True)
    """
    matrices = {"opencv": _opencv_lanczos4_matrix, "pil": _lanczos_matrix}
    if kernel not in matrices:
        raise ValueError(f"kernel must be 'opencv' or 'pil', got {kernel!r}")
    h, w = x.shape[-2:]
    rows = matrices[kernel](h, size[0]).to(x.device, x.dtype)
    cols = matrices[kernel](w, size[1]).to(x.device, x.dtype)
    return torch.einsum("oh,...hw,pw->...op", rows, x, cols)
