"""Backbones: a plain registry (name -> builder) merged from each family's ``BUILDERS``.

Every backbone is an ``nn.Module`` with an ``embed_dim`` attribute whose
``forward(x, return_features=False)`` takes ``B×C×T×H×W`` (video; audio and image
backbones document their own input) and returns the pooled embedding ``B×D``, or
``(embedding, feature_map)`` with the map ``B×C'×T'×H'×W'`` when asked.

Any video backbone can be built with ``residual_frames=True``: it then sees the differences of
consecutive frames (:class:`ResidualFrames`). The option travels with the encoder's kwargs, so a
saved encoder and its random-init baseline are rebuilt with the same input.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import Tensor, nn

from vidssl.errors import ConfigError
from vidssl.models.backbones import audio, image, resnet3d, stica, swin, tsm

BACKBONES: dict[str, Any] = {
    **resnet3d.BUILDERS,
    **tsm.BUILDERS,
    **swin.BUILDERS,
    **audio.BUILDERS,
    **image.BUILDERS,
    **stica.BUILDERS,
}


class ResidualFrames(nn.Module):
    """Feed a video backbone the differences of consecutive frames instead of the frames.

    ``x``: ``B×C×T×H×W`` → the wrapped backbone sees ``x[:, :, 1:] - x[:, :, :-1]`` (``T-1`` frames),
    so whatever is static (background, a digit's colour) cancels and motion dominates the input.
    This is the "residual frames" input of Tao et al. (2020, arXiv:2001.05661), not part of any seed's
    recipe; the tiny presets on the embedded dataset use it because that dataset's classes differ
    only in motion (see docs/demo-findings.md). Input normalisation's mean cancels in the difference.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.embed_dim = backbone.embed_dim

    @staticmethod
    def residuals(x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] < 2:
            raise ValueError(f"residual frames need a B×C×T×H×W clip with T ≥ 2, got shape {tuple(x.shape)}")
        return x[:, :, 1:] - x[:, :, :-1]

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.features(self.residuals(x))

    def forward(self, x: Tensor, return_features: bool = False):
        return self.backbone(self.residuals(x), return_features=return_features)


def build_backbone(name: str, residual_frames: bool = False, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` from :data:`BACKBONES`; unknown names raise a ConfigError with a suggestion.

    ``residual_frames=True`` wraps a video backbone in :class:`ResidualFrames`.
    """
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, BACKBONES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown backbone '{name}'{hint}; known: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name](**kwargs)
    if residual_frames:
        if name in audio.BUILDERS or name in image.BUILDERS:
            raise ConfigError(f"residual_frames applies to video backbones, not '{name}'")
        backbone = ResidualFrames(backbone)
    return backbone
