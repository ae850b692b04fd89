"""STiCA: Space-Time Crop & Attend (Patrick et al., ICCV 2021), cross-modal + within-modal feature crops.

One clip per video, decoded once, gives two spatially augmented views of the *same* frames
(:func:`~vidssl.methods.gdt_views.stica_video_augment`) and one audio spectrogram (257-filter log
filterbank, volume jitter, no SpecAugment). Encoder: R(2+1)D-18 whose feature map ``B×512×T'×7×7`` is
pooled by a small transformer (``r2plus1d18_stica``, :mod:`vidssl.models.backbones.stica`); audio:
ResNet-9; heads ``mlp_v``/``mlp_a`` as GDT's. Reference: brave-gdt-stica.md Part C.

Loss = ``(1 - α)·crop-NCE + α·cross-modal NCE`` with α = 0.5 (``cross_modal_alpha``):

- cross-modal (τ 0.1): ``0.5·[nce(view 1, audio) + nce(view 2, audio)]``, each symmetric;
- feature crops of the map (τ 0.5), projected by the shared ``mlp_v``: spatial crops span the whole
  clip in time, temporal crops the whole map in space. Large–large: view 2's large crop 1 against view
  1's large crop 1, symmetric (one term); small–large: each of view 2's small crops (query) against
  each of view 1's large crops (keys, detached), one direction. The same for temporal crops. The crop
  loss is the mean of its terms.

Negatives are the global batch (keys gathered from every process, detached), as in GDT
(:func:`~vidssl.methods.gdt_nce.gdt_nce_loss`).

Where vidssl departs from the released code (docs/faithfulness.md):

- **Crop positions.** ``np.random.randint(0, 7 - 6)`` excludes its upper bound, so the original's large
  crops are always at [0:6, 0:6] (and [0:3] in time). vidssl draws every position uniformly from all
  positions where the window fits.
- **Zero crop terms.** The original's default counts (1 large, 0 small) give ``0/0 = NaN``; here a crop
  configuration without any crop term is a ConfigError (unless ``cross_modal_alpha`` is 1).
- **No wasted passes.** The original pools and projects view 1's small crops and ``large × small`` small
  crops per view although the loss reads ``small`` of view 2's; vidssl computes only what the loss uses.
- **Audio once.** The original runs the audio network once per video view on the same input; vidssl runs
  it once and pairs both views with that embedding.
- **Pooling tokens.** One transformer token per time step of the pooled map (see the encoder's docstring).
- **Missing audio** is left out of the cross-modal terms (``valid["audio"]``), not fed as silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.errors import ConfigError
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig
from vidssl.methods.gdt_nce import NCETerm, gdt_nce_loss
from vidssl.models.heads import GDTHead
from vidssl.optim import param_group

PAIR = [NCETerm("1", "1", ("1",), (), 0.5)]  # symmetric: 0.5·(a→b + b→a)
ONE_WAY = [NCETerm("1", "1", ("1",), (), 1.0)]  # first modality queries the second


def crop_term_count(large: int, small: int) -> int:
    """Crop NCE terms of one axis (spatial or temporal): 1 large–large if ≥ 2 large crops, plus
    ``large × small`` small–large; none unless there are small crops or ≥ 2 large crops (STiCA)."""
    if small <= 0 and large <= 1:
        return 0
    return (1 if large >= 2 else 0) + large * small


@dataclass
class STiCAConfig(MethodConfig):
    """STiCA settings; defaults = ``scripts/pretrain_stica.sh 60 2 2 4 1 2`` with 2 transformer layers.

    Crop windows are in cells of the feature map (``spatial_crop_sizes``: large, small side;
    ``temporal_crop_sizes``: large, small duration): (6, 4) on the 7×7 map; (3, 2) for 30 frames
    (T' = 4) and (6, 4) for 60 frames (T' = 8).
    """

    name: str = "stica"
    backbone: str = "r2plus1d18_stica"
    backbone_kwargs: dict = field(default_factory=lambda: {"pooling_layers": 2})
    num_frames: int = 60
    stride: int = 1
    target_fps: float | None = 30.0
    canvas: int = 128
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.14, 1.0)
    flip_p: float = 0.5
    color_jitter: float = 0.4
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    audio_backbone: str = "audio_resnet9"
    audio_backbone_kwargs: dict = field(default_factory=dict)
    audio_rate: int = 24000
    audio_seconds: float = 2.0
    audio_filters: int = 257
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    mlp_head: bool = True
    proj_hidden_dim: int = 512
    proj_dim: int = 256
    dropout: float = 0.3
    spatial_large_crops: int = 2
    spatial_small_crops: int = 4
    temporal_large_crops: int = 2
    temporal_small_crops: int = 1
    spatial_crop_sizes: tuple[int, int] = (6, 4)
    temporal_crop_sizes: tuple[int, int] = (6, 4)
    crop_temperature: float = 0.5
    cross_modal_temperature: float = 0.1
    cross_modal_alpha: float = 0.5

    def __post_init__(self):
        for axis in ("spatial", "temporal"):
            large, small = getattr(self, f"{axis}_large_crops"), getattr(self, f"{axis}_small_crops")
            if not 0 <= large <= 2 or small < 0:
                raise ConfigError(f"method.{axis}_large_crops must be 0, 1 or 2 and {axis}_small_crops >= 0 "
                                  f"(got {large}, {small})")
            big, little = getattr(self, f"{axis}_crop_sizes")
            if not 1 <= little <= big:
                raise ConfigError(f"method.{axis}_crop_sizes must be [large, small] with 1 <= small <= large, "
                                  f"got {[big, little]}")
        if not 0 <= self.cross_modal_alpha <= 1:
            raise ConfigError(f"method.cross_modal_alpha must be in [0, 1], got {self.cross_modal_alpha}")
        if self.crop_terms == 0 and self.cross_modal_alpha < 1:
            raise ConfigError(
                "these crop counts give no feature-crop term (the original's defaults divide 0 by 0 and train on "
                "NaN): set spatial_small_crops > 0 or spatial_large_crops = 2 (or the temporal ones), or "
                "cross_modal_alpha = 1 for the cross-modal loss alone")
        if min(self.crop_temperature, self.cross_modal_temperature) <= 0:
            raise ConfigError("method.crop_temperature and cross_modal_temperature must be > 0")

    @property
    def crop_terms(self) -> int:
        return (crop_term_count(self.spatial_large_crops, self.spatial_small_crops)
                + crop_term_count(self.temporal_large_crops, self.temporal_small_crops))


def draw_start(length: int, window: int, what: str) -> int:
    """A uniform start in ``0 … length - window`` (every position where the window fits)."""
    if window > length:
        raise ConfigError(f"{what}: a crop of {window} does not fit the feature map's {length} cells; "
                          f"use smaller method.*_crop_sizes or larger clips")
    return int(torch.randint(0, length - window + 1, ()))


def spatial_crop(fmap: Tensor, window: int) -> Tensor:
    """A ``window``² crop of ``B×C×T×H×W`` at a uniform position, over the whole time extent."""
    y = draw_start(fmap.shape[-2], window, "spatial feature crop")
    x = draw_start(fmap.shape[-1], window, "spatial feature crop")
    return fmap[..., y : y + window, x : x + window]


def temporal_crop(fmap: Tensor, window: int) -> Tensor:
    """``window`` time steps of ``B×C×T×H×W`` at a uniform position, over the whole space."""
    t = draw_start(fmap.shape[2], window, "temporal feature crop")
    return fmap[:, :, t : t + window]


class STiCA(SSLMethod):
    """STiCA (see the module docstring). Views: ``video_1``, ``video_2`` (two augmentations of one clip)
    and ``audio``; ``self.encoder`` = backbone + pooling (the exported encoder)."""

    Config = STiCAConfig
    eval_views = "gdt"

    def build(self) -> None:
        from vidssl.methods.gdt_views import AudioView, stica_video_augment
        from vidssl.models.backbones import build_backbone

        m = self.cfg.method
        self.audio_encoder = build_backbone(m.audio_backbone, **m.audio_backbone_kwargs)
        self.mlp_v = GDTHead(self.embed_dim, m.proj_hidden_dim, m.proj_dim, m.dropout, m.mlp_head)
        self.mlp_a = GDTHead(int(self.audio_encoder.embed_dim), m.proj_hidden_dim, m.proj_dim, m.dropout, m.mlp_head)
        self.video_augment = stica_video_augment(m.crop_size, m.crop_scale, m.flip_p, m.color_jitter, m.jitter_p,
                                                 m.gray_p, m.blur_p, self.input_mean, self.input_std)
        self.audio_view = AudioView(m.audio_rate, m.audio_filters, z_normalise=False, spec_augment="none",
                                    volume_jitter=m.volume_jitter)
        if not hasattr(self.pooled_encoder, "pool"):
            raise ConfigError(f"STiCA pools feature crops: method.backbone must be a pooled encoder such as "
                              f"r2plus1d18_stica, got '{m.backbone}'")

    @property
    def pooled_encoder(self):
        """The encoder with ``features`` and ``pool`` (inside a residual-frames wrapper when there is one)."""
        return getattr(self.encoder, "backbone", self.encoder) if not hasattr(self.encoder, "pool") else self.encoder

    def make_plan(self):
        from vidssl.data.sampling import ViewsPlan, ViewSpec

        m = self.cfg.method
        return ViewsPlan([ViewSpec("clip", num_frames=m.num_frames, canvas=(m.canvas, m.canvas),
                                   **self.frame_rate(m.stride)),
                          ViewSpec("audio", kind="audio", seconds=m.audio_seconds, sample_rate=m.audio_rate,
                                   align_to="clip")])

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        clips = batch["video"]["clips"]
        frames = clips["clip"]
        both = self.video_augment(torch.cat([frames, frames]))  # independent draws per copy
        first, second = both.chunk(2)
        return {"video_1": first, "video_2": second, "audio": self.audio_view(clips["audio"])}

    def project(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.mlp_v(pooled), dim=1)

    def crop_loss(self, map1: Tensor, map2: Tensor) -> tuple[Tensor | None, int]:
        """Sum and count of the feature-crop terms of both axes (see the module docstring)."""
        m, pool = self.cfg.method, self.pooled_encoder.pool
        total, count = None, 0
        axes = (("spatial", spatial_crop, m.spatial_crop_sizes), ("temporal", temporal_crop, m.temporal_crop_sizes))
        for axis, crop, (big, little) in axes:
            large, small = getattr(m, f"{axis}_large_crops"), getattr(m, f"{axis}_small_crops")
            if crop_term_count(large, small) == 0:
                continue
            keys = [self.project(pool(crop(map1, big))) for _ in range(large)]  # view 1's large crops
            terms = []
            if large >= 2:
                query = self.project(pool(crop(map2, big)))  # view 2's large crop 1
                terms.append(gdt_nce_loss({"q": {"1": query}, "k": {"1": keys[1]}}, {}, PAIR,
                                          m.crop_temperature)["loss"])
            for _ in range(small):
                query = self.project(pool(crop(map2, little)))  # view 2's small crop j
                for key in keys:
                    terms.append(gdt_nce_loss({"q": {"1": query}, "k": {"1": key}}, {}, ONE_WAY,
                                              m.crop_temperature, symmetric=False)["loss"])
            part = torch.stack(terms).sum()
            total = part if total is None else total + part
            count += len(terms)
        return total, count

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        m = self.cfg.method
        encoder = self.pooled_encoder
        map1 = self.encoder.features(views["video_1"])
        map2 = self.encoder.features(views["video_2"])
        emb1, emb2 = encoder.pool(map1), encoder.pool(map2)
        audio = F.normalize(self.mlp_a(self.audio_encoder(views["audio"])), dim=1)
        valid = batch["video"].get("valid", {}).get("audio")
        valid = {"audio": {"1": valid.to(audio.device)}} if valid is not None else {}
        cross = 0.5 * sum(gdt_nce_loss({"video": {"1": self.project(e)}, "audio": {"1": audio}}, valid, PAIR,
                                       m.cross_modal_temperature)["loss"] for e in (emb1, emb2))
        crops, count = self.crop_loss(map1, map2) if m.cross_modal_alpha < 1 else (None, 0)
        out = {"loss_cross_modal": cross}
        loss = m.cross_modal_alpha * cross
        if crops is not None:
            out["loss_crops"] = crops / count
            loss = loss + (1 - m.cross_modal_alpha) * out["loss_crops"]
        if valid:
            out["audio_valid"] = valid["audio"]["1"].float().mean()
        out["loss"] = loss
        out["embedding"] = emb1
        return out

    def param_groups(self) -> list[dict[str, Any]]:
        """One group: STiCA decays every parameter with SGD; no LARS."""
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("probe.")]
        return [param_group("stica", params, weight_decay_mult=1.0, lars=False)]


__all__ = ["STiCA", "STiCAConfig", "crop_term_count", "spatial_crop", "temporal_crop"]
