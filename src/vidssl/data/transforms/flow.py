"""Device-side augmentation of optical-flow views: crops and flips that keep the vectors consistent.

Flow is not an image: cropping and resizing scale the displacement vectors, and a horizontal
flip negates ``dx``. Colour, blur and RandConv do not apply to flow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.data.transforms.core import to_device_async

__all__ = ["augment_flow"]


def augment_flow(flow: Tensor, out_size: int, generator: torch.Generator | None = None) -> Tensor:
    """Random resized crop + horizontal flip of a flow batch, vectors kept consistent.

    Args:
        flow: ``B×2×T×H×W`` float in [-1, 1] (see :func:`vidssl.data.flow.flow_view`).
        out_size: output side (square).

    Returns ``B×2×T×out×out``. The crop uses BraVe's Inception-style window (area 0.3–1,
    aspect 0.5–2, one window per clip); the vectors are multiplied by the zoom factor of each
    axis (then re-clipped to [-1, 1]) and ``dx`` is negated where the clip is flipped. BraVe
    applies no colour augmentation to flow (there is none to apply); blur and RandConv are
    for RGB only.
    """
    b, c, t, h, w = flow.shape
    if c != 2:
        raise ValueError(f"augment_flow expects B×2×T×H×W, got {tuple(flow.shape)}")
    dev = flow.device
    area = torch.empty(b).uniform_(0.3, 1.0, generator=generator) * h * w
    log_ratio = torch.empty(b).uniform_(math.log(0.5), math.log(2.0), generator=generator)
    ratio = torch.exp(log_ratio)
    cw = torch.sqrt(area * ratio).clamp(max=w)
    ch = torch.sqrt(area / ratio).clamp(max=h)
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    flip = torch.rand(b, generator=generator) < 0.5
    # affine grid in normalised coordinates: output [-1,1] -> crop window
    sx, sy = cw / w, ch / h
    tx = (2 * x0 + cw) / w - 1
    ty = (2 * y0 + ch) / h - 1
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -sx, sx)
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    theta = to_device_async(theta, dev).to(flow.dtype)
    frames = flow.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    grid = F.affine_grid(theta.repeat_interleave(t, 0), [b * t, c, out_size, out_size], align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.reshape(b, t, c, out_size, out_size).permute(0, 2, 1, 3, 4)
    # vectors: displacement in output pixels = input displacement × (out / crop size)
    # vectors are in units of `max_pixels` pixels of the canvas; a canvas displacement d becomes
    # d · out/crop pixels of the output, so values scale by out/crop per axis
    zoom_x, zoom_y = out_size / cw, out_size / ch
    sign_x = torch.where(flip, -1.0, 1.0)
    scale = to_device_async(torch.stack([zoom_x * sign_x, zoom_y], dim=1), dev).to(flow.dtype).view(b, 2, 1, 1, 1)
    return (out * scale).clamp(-1.0, 1.0)


