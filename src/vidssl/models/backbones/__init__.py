"""Backbones: a plain registry (name -> builder) merged from each family's ``BUILDERS``.

Every backbone is an ``nn.Module`` with an ``embed_dim`` attribute whose
``forward(x, return_features=False)`` takes ``B×C×T×H×W`` (video; audio and image
backbones document their own input) and returns the pooled embedding ``B×D``, or
``(embedding, feature_map)`` with the map ``B×C'×T'×H'×W'`` when asked.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from vidssl.errors import ConfigError
from vidssl.models.backbones import audio, image, resnet3d, swin, tsm

BACKBONES: dict[str, Any] = {
    **resnet3d.BUILDERS,
    **tsm.BUILDERS,
    **swin.BUILDERS,
    **audio.BUILDERS,
    **image.BUILDERS,
}


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` from :data:`BACKBONES`; unknown names raise a ConfigError with a suggestion."""
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, BACKBONES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown backbone '{name}'{hint}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](**kwargs)
