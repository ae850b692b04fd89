"""ρBYOL as in PySlowFast (Feichtenhofer et al., 2021), the base framework of FGKVMemPred.

ρ clips per video at independent random times (views ``clip_1 … clip_ρ``), sliced from ONE
decode (:class:`~vidssl.data.sampling.ViewsPlan` with ρ anchors), each with its own spatial and
colour augmentation. Online network = encoder + projector
``MLP(D→4096→256, BN)`` + predictor ``MLP(256→4096→256, BN)``; target network = an EMA copy
of encoder + projector (parameters only; its BN runs in train mode). For every ordered pair
(query clip k, key clip j ≠ k) the loss is ``2 - 2·cos(pred(z_k), z'_j)``; each query's loss
is averaged over its keys and the queries are summed — for ρ = 2 exactly PySlowFast's
symmetric loss (it back-propagates each clip's loss in turn before one optimiser step, which
gives the same gradient as our single backward of the sum).

Each clip goes through the online encoder separately, as in PySlowFast, so BatchNorm sees
per-clip batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vidssl.losses import byol_loss
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig
from vidssl.models.heads import MLPHead


@dataclass
class BYOLConfig(MethodConfig):
    """ρBYOL settings (PySlowFast ``CONTRASTIVE`` defaults: MLP_DIM 4096, DIM 256, 2 layers, BN)."""

    name: str = "byol"
    rho: int = 2
    # Augmentation knobs; the defaults are PySlowFast's (= vidssl.data.transforms.byol_video_augment).
    # The demo presets turn flips off: its classes include left/right and clockwise/anticlockwise
    # motions, which a flip swaps, so flip invariance would erase them.
    crop_scale: tuple[float, float] = (0.2, 0.766)
    # True (the full presets): the workers cut PySlowFast's random resized crop from the whole frame at a
    # source_short_side scale, and the device blur is scaled by each crop's zoom (docs/faithfulness.md).
    # False: the crop is drawn on the device inside the canvas (the tiny presets' measured recipe).
    crop_from_frame: bool = False
    source_short_side: int = 256
    flip_p: float = 0.5
    blur_p: float = 0.5
    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096


class BYOL(SSLMethod):
    """ρBYOL; subclasses change the predictor (:meth:`build_predictor`) and the pair loss (:meth:`pair_loss`)."""

    Config = BYOLConfig

    def build(self) -> None:
        m = self.cfg.method
        if m.rho < 2:
            raise ValueError(f"method.rho must be >= 2 (clips per video), got {m.rho}")
        self.projector = MLPHead(self.embed_dim, m.proj_hidden_dim, m.proj_dim)
        self.predictor = self.build_predictor()
        self.add_target("target_encoder", "encoder")
        self.add_target("target_projector", "projector")
        self.augmentation = self.build_augmentation()

    def build_augmentation(self) -> nn.Module:
        """PySlowFast's ρBYOL view (:func:`~vidssl.data.transforms.byol_video_augment`) with the
        config's crop scale, flip and blur probabilities and the method's input normalisation."""
        from vidssl.data.transforms import byol_video_augment

        m = self.cfg.method
        return byol_video_augment(m.crop_size, self.input_mean, self.input_std, crop_scale=tuple(m.crop_scale),
                                  flip_p=m.flip_p, blur_p=m.blur_p, crop=not m.crop_from_frame)

    def build_predictor(self) -> nn.Module:
        m = self.cfg.method
        return MLPHead(m.proj_dim, m.pred_hidden_dim, m.proj_dim)

    @property
    def clip_names(self) -> list[str]:
        """The view names of the ρ clips: ``clip_1 … clip_ρ``."""
        return [f"clip_{k + 1}" for k in range(self.cfg.method.rho)]

    def make_plan(self):
        from vidssl.data.sampling import CropOptions, ViewsPlan, ViewSpec

        m = self.cfg.method
        if m.crop_from_frame:  # PySlowFast: each clip's crop from the whole frame, cut by the worker
            crop = CropOptions(tuple(m.crop_scale), (0.75, 1.333), m.source_short_side)
            geometry = dict(canvas=(m.crop_size, m.crop_size), crop=crop)
        else:
            geometry = dict(canvas=(m.canvas, m.canvas))
        return ViewsPlan([ViewSpec(name, num_frames=m.num_frames, **geometry, **self.frame_rate(m.stride))
                          for name in self.clip_names])

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``clips[clip_k]`` uint8 ``B×T×H×W×C`` → float views ``B×C×T×h×w``, independent draws per
        clip (all ρ clips go through one batched call)."""
        from vidssl.data.transforms import scale_blur_to_zoom

        clips = torch.cat([batch["video"]["clips"][name] for name in self.clip_names])
        params = self.augmentation.draw(clips.shape, clips.device)
        zoom = batch["video"].get("zoom")
        if zoom:  # worker crops: blur as PySlowFast does before its crop, at source resolution
            params = scale_blur_to_zoom(self.augmentation, params, torch.cat([zoom[n] for n in self.clip_names]))
        x = self.augmentation.apply(clips, params)
        return dict(zip(self.clip_names, x.chunk(len(self.clip_names))))

    @torch.no_grad()
    def target_forward(self, x: Tensor) -> dict[str, Tensor]:
        """Target branch: pooled encoder features ``B×D`` and projection ``B×256`` (not normalised)."""
        emb = self.target_encoder(x)
        return {"embedding": emb, "z": self.target_projector(emb)}

    def pair_loss(self, online: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss terms of one (query, key) pair; ``"loss"`` is their weighted total."""
        sim = byol_loss(self.predictor(online["z"]), target["z"])
        return {"loss": sim, "sim": sim}

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        names = self.clip_names
        targets = {name: self.target_forward(views[name]) for name in names}
        totals: dict[str, Tensor] = {}
        for query in names:
            emb = self.encoder(views[query])
            online = {"embedding": emb, "z": self.projector(emb)}
            if query == names[0]:
                totals["embedding"] = emb
            keys = [key for key in names if key != query]
            for key in keys:
                for name, value in self.pair_loss(online, targets[key]).items():
                    totals[name] = totals.get(name, 0.0) + value / len(keys)
        return totals
