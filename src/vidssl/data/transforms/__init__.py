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
:class:`RandConv`, :class:`RandAugment` (imgaug's policy, as BEVT's SSv2 fine-tuning),
:class:`RandomErasing` (timm's), :class:`Normalize`, :class:`CenterCrop`, :class:`SpatialCrops`,
:class:`Compose`; ready-made pipelines: :func:`byol_video_augment`,
:func:`brave_narrow_augment`, :func:`brave_broad_augment`, :func:`eval_transform`.

Example:
    >>> import torch
    >>> clips = torch.randint(0, 256, (4, 8, 64, 80, 3), dtype=torch.uint8)  # B×T×H×W×C
    >>> augment = byol_video_augment(56)
    >>> augment(clips, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 8, 56, 56])

Modules: :mod:`~vidssl.data.transforms.core` (random draws, :class:`ClipTransform`,
:class:`Compose`, :class:`ToFloatClip`, :class:`Normalize`),
:mod:`~vidssl.data.transforms.geometry` (crops, flips, resizing),
:mod:`~vidssl.data.transforms.colour` (colour jitter, grayscale),
:mod:`~vidssl.data.transforms.filters` (blur, random convolution),
:mod:`~vidssl.data.transforms.randaugment` (RandAugment and its operations),
:mod:`~vidssl.data.transforms.erasing` (random erasing),
:mod:`~vidssl.data.transforms.flow` (crop and flip of optical flow, vectors kept consistent) and
:mod:`~vidssl.data.transforms.recipes` (the ready-made pipelines).
"""

from __future__ import annotations

from vidssl.data.transforms.colour import (
    BraveColorAugment,
    ColorJitter,
    RandomGrayscale,
    _factor_range,
    _hue_and_range,
    _rgb_from_hue,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    hsv_to_rgb,
    rgb_to_grayscale,
    rgb_to_hsv,
    tf_adjust_contrast,
    tf_adjust_saturation,
)
from vidssl.data.transforms.core import (
    GRAY_WEIGHTS,
    KINETICS_MEAN,
    KINETICS_STD,
    ClipTransform,
    Compose,
    Normalize,
    Params,
    ToFloatClip,
    _apply_where,
    _check_clip,
    _draw_device,
    _gathers_rows,
    _per_sample,
    bernoulli,
    uniform,
)
from vidssl.data.transforms.erasing import RandomErasing
from vidssl.data.transforms.filters import (
    _TRUNCATED_STD,
    GaussianBlur,
    RandConv,
    _truncated_normal,
    blur_kernel_size_for,
    gaussian_kernels,
    separable_blur,
)
from vidssl.data.transforms.flow import augment_flow
from vidssl.data.transforms.geometry import (
    CenterCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeShortSide,
    SpatialCrops,
    _crop_offsets,
    _pair,
    crop_and_resize,
    sample_crop_boxes,
)
from vidssl.data.transforms.randaugment import RANDAUGMENT_OPS, RandAugment
from vidssl.data.transforms.recipes import (
    EvalTransform,
    _brave_view,
    brave_broad_augment,
    brave_narrow_augment,
    byol_video_augment,
    eval_transform,
    scale_blur_to_zoom,
)

__all__ = [
    "scale_blur_to_zoom",
    "augment_flow",
    "BraveColorAugment", "CenterCrop", "ClipTransform", "ColorJitter", "Compose", "EvalTransform",
    "GaussianBlur", "Normalize", "RANDAUGMENT_OPS", "RandAugment", "RandConv", "RandomErasing", "RandomGrayscale",
    "RandomHorizontalFlip", "RandomResizedCrop",
    "ResizeShortSide", "SpatialCrops", "ToFloatClip", "adjust_brightness", "adjust_contrast", "adjust_hue",
    "adjust_saturation", "blur_kernel_size_for", "brave_broad_augment", "brave_narrow_augment",
    "byol_video_augment", "crop_and_resize", "eval_transform", "gaussian_kernels", "hsv_to_rgb",
    "rgb_to_grayscale", "rgb_to_hsv", "sample_crop_boxes", "separable_blur", "tf_adjust_contrast",
    "tf_adjust_saturation", "uniform", "bernoulli",
]
