"""The views of GDT and STiCA on the device: video augmentation pipelines and the audio front end.

- :func:`gdt_video_augment` (B3): short side resized to U(128, 160) then a random 112² crop, flip 0.5,
  colour jitter 0.4/0.4/0.4 always, mean/std 0.45/0.225. GDT's ``color_jitter`` reads its clip as
  T×C×H×W while it is C×T×H×W, so it mixes time steps 0–2 and scales every later frame instead of
  jittering colour (B3 quirk); vidssl jitters brightness, contrast and saturation per channel, the
  same factors for every frame (the intent).
- :func:`stica_video_augment` (C1): RandomResizedCrop (0.14, 1) → 112, flip 0.5, colour jitter p 0.8
  (no hue), grayscale p 0.2, Gaussian blur p 0.5 with σ ~ U(0.1, 2), then the normalisation.
  STiCA normalises *before* its colour operations and builds its grayscale with BGR weights on RGB
  frames; kornia 0.1.4 read its blur's ``(0.1, 2.0)`` as fixed per-axis σ (a horizontal σ = 2 blur).
  vidssl jitters colour on [0, 1] pixels, uses RGB luma weights and draws σ per clip (the intent).
- :class:`AudioView`: waveform → volume jitter U(0.9, 1.1) → log filterbank (GDT: 40 filters,
  z-normalised; STiCA: 257 filters, not normalised) → SpecAugment (GDT: medium; STiCA: none).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vidssl.data.audio import SPEC_AUGMENT_SETTINGS, LogFilterbank, SpecAugment, VolumeJitter
from vidssl.data.transforms import (
    ClipTransform,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToFloatClip,
    crop_and_resize,
    uniform,
)
from vidssl.data.transforms.core import Params, _check_clip

__all__ = ["ShortSideJitterCrop", "gdt_video_augment", "stica_video_augment", "AudioView"]


class ShortSideJitterCrop(ClipTransform):
    """Resize the short side to ``S ~ U(short_side)`` then take a random ``size``² crop (GDT, B3).

    Computed as one crop of side ``size · min(H, W) / S`` input pixels at a uniform position, resized
    to ``size`` (the same box for every frame of a clip). ``B×C×T×H×W`` → ``B×C×T×size×size``.

    Example:
        >>> ShortSideJitterCrop(32, (36, 45))(torch.rand(2, 3, 4, 40, 40)).shape
        torch.Size([2, 3, 4, 32, 32])
    """

    def __init__(self, size: int, short_side: Sequence[float] = (128.0, 160.0)):
        super().__init__()
        low, high = float(short_side[0]), float(short_side[1])
        if not size <= low <= high:
            raise ValueError(f"need crop size <= short_side[0] <= short_side[1], got {size} and {tuple(short_side)}")
        self.size, self.short_side = int(size), (low, high)

    def draw(self, shape, device, generator=None) -> Params:
        batch, height, width = shape[0], shape[-2], shape[-1]
        draw = dict(device=device, generator=generator)
        side = self.size * min(height, width) / uniform(batch, *self.short_side, **draw)
        side = torch.minimum(side, torch.full_like(side, float(min(height, width))))
        x0 = uniform(batch, 0.0, 1.0, **draw) * (width - side)
        y0 = uniform(batch, 0.0, 1.0, **draw) * (height - side)
        return {"boxes": torch.stack([x0, y0, x0 + side, y0 + side], dim=1)}

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size((*shape[:-2], self.size, self.size))

    def apply(self, x: Tensor, params: Params) -> Tensor:
        _check_clip(x, "ShortSideJitterCrop")
        return crop_and_resize(x, params["boxes"], (self.size, self.size))


def gdt_video_augment(crop_size: int = 112, short_side: Sequence[float] = (128.0, 160.0), flip_p: float = 0.5,
                      jitter: float = 0.4, mean: float = 0.45, std: float = 0.225) -> Compose:
    """GDT's pretraining video view (B3); uint8 ``B×T×H×W×C`` → float ``B×C×T×crop×crop``."""
    steps: list[ClipTransform] = [ToFloatClip(), ShortSideJitterCrop(crop_size, short_side)]
    if flip_p > 0:
        steps.append(RandomHorizontalFlip(flip_p))
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter, 0.0, p=1.0))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def stica_video_augment(crop_size: int = 112, crop_scale: Sequence[float] = (0.14, 1.0), flip_p: float = 0.5,
                        jitter: float = 0.4, jitter_p: float = 0.8, gray_p: float = 0.2, blur_p: float = 0.5,
                        mean: float = 0.45, std: float = 0.225) -> Compose:
    """STiCA's video view (C1, ``clip_augmentation``); uint8 ``B×T×H×W×C`` → float ``B×C×T×crop×crop``."""
    steps: list[ClipTransform] = [ToFloatClip(), RandomResizedCrop(crop_size, scale=tuple(crop_scale),
                                                                   ratio=(3 / 4, 4 / 3))]
    if flip_p > 0:
        steps.append(RandomHorizontalFlip(flip_p))
    if jitter > 0 and jitter_p > 0:
        steps.append(ColorJitter(jitter, jitter, jitter, 0.0, p=jitter_p))
    if gray_p > 0:
        steps.append(RandomGrayscale(gray_p))
    if blur_p > 0:
        steps.append(GaussianBlur(kernel_size=11, sigma=(0.1, 2.0), p=blur_p))
    steps.append(Normalize(mean, std))
    return Compose(steps)


class AudioView(nn.Module):
    """Waveform ``B×N`` → spectrogram ``B×1×time×filters`` with GDT's/STiCA's audio augmentation.

    Args:
        sample_rate: of the waveform (GDT 24 kHz).
        num_filters: 40 (GDT, ``aud_spec_type 1``) or 257 (STiCA, ``aud_spec_type 2``).
        z_normalise: GDT's ``(x - 1.93) / 17.89``; STiCA feeds the log energies as they are.
        spec_augment: ``"none"`` or a key of :data:`~vidssl.data.audio.SPEC_AUGMENT_SETTINGS` (GDT: medium).
        volume_jitter: gain range (GDT and STiCA: 0.9–1.1); ``(1, 1)`` turns it off.
    """

    def __init__(self, sample_rate: int = 24000, num_filters: int = 40, z_normalise: bool = True,
                 spec_augment: str = "medium", volume_jitter: Sequence[float] = (0.9, 1.1)):
        super().__init__()
        kwargs = {} if z_normalise else {"mean": 0.0, "std": 1.0}
        self.filterbank = LogFilterbank(sample_rate=sample_rate, num_filters=num_filters, **kwargs)
        if spec_augment != "none" and spec_augment not in SPEC_AUGMENT_SETTINGS:
            raise ValueError(f"spec_augment must be 'none' or one of {list(SPEC_AUGMENT_SETTINGS)}, got {spec_augment!r}")
        self.spec_augment = SpecAugment(*SPEC_AUGMENT_SETTINGS[spec_augment]) if spec_augment != "none" else None
        low, high = volume_jitter
        self.volume = VolumeJitter(low, high) if (low, high) != (1.0, 1.0) else None

    def forward(self, wave: Tensor, train: bool = True) -> Tensor:
        wave = wave.float()
        if train and self.volume is not None:
            wave = self.volume(wave)
        spec = self.filterbank(wave)
        if train and self.spec_augment is not None:
            spec = self.spec_augment(spec)
        return spec
