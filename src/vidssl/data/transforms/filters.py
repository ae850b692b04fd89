"""Filtering clip transforms: Gaussian kernels and blur, :class:`GaussianBlur`, :class:`RandConv`."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.data.transforms.core import (
    ClipTransform,
    Params,
    _apply_where,
    _check_clip,
    bernoulli,
    to_device_async,
    uniform,
)

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
        sizes = to_device_async(torch.tensor(self.kernel_sizes), device)
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
