"""Ready-made pipelines: the per-method training views and the evaluation views."""

from __future__ import annotations

from torch import Tensor

from vidssl.data.transforms.colour import BraveColorAugment, ColorJitter, RandomGrayscale
from vidssl.data.transforms.core import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipTransform,
    Compose,
    Normalize,
    Params,
    ToFloatClip,
)
from vidssl.data.transforms.filters import GaussianBlur, RandConv, blur_kernel_size_for
from vidssl.data.transforms.geometry import RandomHorizontalFlip, RandomResizedCrop, ResizeShortSide, SpatialCrops

# --------------------------------------------------------------------------------------
# pipelines


def byol_video_augment(crop_size: int = 112, mean=KINETICS_MEAN, std=KINETICS_STD,
                       crop_scale: tuple[float, float] = (0.2, 0.766), flip_p: float = 0.5,
                       blur_p: float = 0.5, crop: bool = True) -> Compose:
    """ρBYOL / FGKVMemPred pretraining view (MoCo-v2 style) with PySlowFast's parameters, uint8
    clips → normalised floats.

    Parameters are PySlowFast's: RandomResizedCrop area [0.2, 0.766], aspect [0.75, 1.333]; flip
    0.5; ColorJitter(0.6, 0.6, 0.6, hue 0.15) with p 0.8; grayscale 0.2; blur σ ∈ [0.1, 2] with
    p 0.5 (13 taps, enough for σ = 2; PySlowFast uses PIL's blur); normalise mean 0.45, std
    0.225. ``flip_p`` or ``blur_p`` of 0 leaves that step out.

    ``crop=True``: the crop is drawn here, inside the square canvas the workers fit the frames to
    (the tiny presets). ``crop=False``: the workers already cut PySlowFast's crop from the whole frame
    (``vidssl.data.sampling.CropOptions``, the full presets); colour jitter, grayscale and blur then
    run after the crop, where PySlowFast runs them before it at source resolution — equivalent for
    the colour ops, and for the blur once its sigma is multiplied by the crop's zoom
    (:func:`scale_blur_to_zoom`; tests/data/test_transforms.py shows the two orders agree).
    """
    steps: list[ClipTransform] = [ToFloatClip()]
    if crop:
        steps.append(RandomResizedCrop(crop_size, scale=tuple(crop_scale), ratio=(0.75, 1.333)))
    if flip_p > 0:
        steps.append(RandomHorizontalFlip(flip_p))
    steps += [ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8), RandomGrayscale(0.2)]
    if blur_p > 0:
        steps.append(GaussianBlur(kernel_size=13, sigma=(0.1, 2.0), p=blur_p))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def scale_blur_to_zoom(pipeline: Compose, params: dict, zoom: Tensor) -> dict:
    """Multiply the sigma of every :class:`GaussianBlur` of ``pipeline`` in drawn ``params`` by ``zoom``
    (``B``: output pixels per source pixel), so a blur after a worker crop equals the seed's blur
    before it: blurring at source resolution with σ, then resizing by ``zoom``, is blurring the
    resized image with σ·zoom."""
    out = dict(params)
    for index, transform in enumerate(pipeline.transforms):
        key = f"{index}.sigma"
        if isinstance(transform, GaussianBlur) and key in out:
            out[key] = out[key] * zoom.to(out[key].device, out[key].dtype)
    return out


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
        >>> import torch
        >>> views = eval_transform(32, num_spatial_crops=3)(torch.zeros(2, 5, 4, 32, 40, 3, dtype=torch.uint8))
        >>> views.shape  # 5 temporal clips × 3 crops
        torch.Size([2, 15, 3, 4, 32, 32])
    """
    return EvalTransform(crop_size, num_spatial_crops, layout, short_side, mean, std)
