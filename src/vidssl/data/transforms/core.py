"""Core of :mod:`vidssl.data.transforms`: per-sample random draws, the :class:`ClipTransform`
base class, :class:`Compose`, :class:`ToFloatClip`, :class:`Normalize` and shared constants."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale and tf.image.rgb_to_grayscale
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

KINETICS_MEAN, KINETICS_STD = 0.45, 0.225

# --------------------------------------------------------------------------------------
# random draws


def to_device_async(t: Tensor, device: torch.device) -> Tensor:
    """``t`` (drawn on the host) on ``device`` without stalling the host: a CUDA copy goes through pinned
    memory with ``non_blocking`` (a pageable host-to-device copy waits for the GPU to catch up)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


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
        >>> from vidssl.data.transforms import RandomHorizontalFlip
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
