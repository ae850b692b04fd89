"""Random batches shaped exactly like the loaders' (for benchmarks and tests that skip decoding).

``synthetic_batch(method.data_streams(), batch_size)`` gives ``{stream: stream batch}`` with, for
every view of every stream, content of the view's kind, shape and dtype: uint8 frames for
video/image views, a float waveform in [-0.3, 0.3]-ish for audio, flow in [-1, 1]; every view valid.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["synthetic_stream_batch", "synthetic_batch"]


def synthetic_stream_batch(plan: Any, batch_size: int = 8, seed: int = 0, num_classes: int = 3,
                           device: torch.device | str = "cpu") -> dict[str, Any]:
    """One stream's collated batch for ``plan`` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    clips, valid = {}, {}
    for view in plan.views:
        h, w = view.canvas or (32, 32)
        k = (plan.clips_per_view,) if plan.clips_per_view else ()
        if view.kind == "video":
            clips[view.name] = torch.randint(0, 256, (batch_size, *k, view.num_frames, h, w, 3), dtype=torch.uint8,
                                             generator=g)
        elif view.kind == "image":
            clips[view.name] = torch.randint(0, 256, (batch_size, *k, h, w, 3), dtype=torch.uint8, generator=g)
        elif view.kind == "audio":
            n = int(round(view.seconds * view.sample_rate))
            clips[view.name] = 0.1 * torch.randn(batch_size, *k, n, generator=g)
        else:
            clips[view.name] = torch.rand(batch_size, 2, view.num_frames, h, w, generator=g) * 2 - 1
        valid[view.name] = torch.ones(batch_size, dtype=torch.bool)
    batch = {"clips": clips, "valid": valid, "label": torch.arange(batch_size) % num_classes,
             "index": torch.arange(batch_size)}
    zoom = {v.name: 0.25 + 0.5 * torch.rand(batch_size, generator=g) for v in plan.views if v.crop is not None}
    if zoom:  # worker-cropped views carry their zoom (output pixels per source pixel)
        batch["zoom"] = zoom
    extras = getattr(plan, "synthetic_extras", None)  # per-item extras of the plan (e.g. caption tokens)
    if extras is not None:
        batch.update(extras(batch_size, g))
    batch = {key: ({n: t.to(device) for n, t in value.items()} if isinstance(value, dict) else value.to(device))
             for key, value in batch.items()}
    batch["skipped"] = []
    return batch


def synthetic_batch(streams: dict[str, Any], batch_size: int = 8, seed: int = 0, num_classes: int = 3,
                    device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """``{stream: batch}`` for a method's ``data_streams()``, as the DataModule delivers it."""
    return {name: synthetic_stream_batch(stream.plan, batch_size, seed + i, num_classes, device)
            for i, (name, stream) in enumerate(streams.items())}
