"""GDT: Multi-modal Self-Supervision from Generalized Data Transformations (Patrick et al., ICCV 2021).

Per video, two time positions τ1, τ2 at independent random starts and their time-reversed twins:
up to four video–audio pairs from one decode (reference: brave-gdt-stica.md B2–B7). Video: 30 frames
at 30 fps, short side U(128, 160), 112² crop, flip, colour jitter (:func:`gdt_video_augment`).
Audio: 1 s at 24 kHz starting with the clip, volume jitter, 40-filter log filterbank z-normalised,
SpecAugment medium (:class:`AudioView`). A reversed pair is the clip played backwards (its own
spatial augmentation) with the *same* augmented spectrogram flipped in time, as in GDT.

Encoders: ``self.encoder`` (R(2+1)D-18, 512-d; the exported encoder) and ``self.audio_encoder``
(ResNet-9, 512-d); heads ``mlp_v``/``mlp_a`` (:class:`~vidssl.models.heads.GDTHead`: dropout 0.3,
512 → 512 → 256), L2-normalised. Loss: the NCE of the chosen hypothesis (τ 0.07;
:mod:`vidssl.methods.gdt_nce`), ``method.hypothesis`` = 1–9 or its name (``basecase``,
``v_reversal``, ``i_reversal``, ``v_shift``, ``i_shift``, ``v_reversal_v_shift``, …). Each pair set
(one transform) is a separate forward pass, so batch norm sees per-set statistics, as in GDT.

Optimisation (B7): SGD momentum 0.9, weight decay 1e-5 on every parameter (BN and biases included),
lr warmed up from 0.01 to 0.01 × (global batch / 8) over 10 epochs, then constant
(``optim.schedule: constant``). GDT steps its warm-up once per epoch; vidssl ramps per step.

Where vidssl departs from the released code: see the docstrings of :mod:`vidssl.methods.gdt_nce`
(negative sets, one process, missing audio) and :mod:`vidssl.methods.gdt_views` (colour jitter),
and docs/faithfulness.md. A pair whose audio is missing or cut short (``valid[audio_k] = False``)
is left out of the loss instead of being fed as silence (GDT's loader skips such files up front;
when a window runs past the end of the track it moves the window, which breaks synchrony).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from vidssl.errors import ConfigError
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig
from vidssl.methods.gdt_nce import gdt_nce_loss, hypothesis_name, hypothesis_terms, transforms_of
from vidssl.models.heads import GDTHead
from vidssl.optim import param_group


@dataclass
class GDTConfig(MethodConfig):
    """GDT settings (the preset's ``method:`` section); defaults = ``scripts/pretrain_gdt_k400.sh``.

    Video views: ``num_frames`` frames, every ``stride``-th of the video resampled to ``target_fps``
    (GDT: 30 frames at 30 fps; None: of the source frames), fitted to a ``canvas``² square by the
    workers, then short side ``short_side`` and a ``crop_size``² crop.
    """

    name: str = "gdt"
    hypothesis: str = "basecase"
    backbone: str = "r2plus1d18_tv"
    num_frames: int = 30
    stride: int = 1
    target_fps: float | None = 30.0
    canvas: int = 128
    crop_size: int = 112
    short_side: tuple[float, float] = (128.0, 160.0)
    flip_p: float = 0.5
    color_jitter: float = 0.4
    audio_backbone: str = "audio_resnet9"
    audio_backbone_kwargs: dict = field(default_factory=dict)
    audio_rate: int = 24000
    audio_seconds: float = 1.0
    audio_filters: int = 40
    spec_augment: str = "medium"
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    mlp_head: bool = True
    proj_hidden_dim: int = 512
    proj_dim: int = 256
    dropout: float = 0.3
    temperature: float = 0.07

    def __post_init__(self):
        self.hypothesis = hypothesis_name(self.hypothesis)
        if self.temperature <= 0:
            raise ConfigError(f"method.temperature must be > 0, got {self.temperature}")
        if not self.crop_size <= self.short_side[0] <= self.short_side[1]:
            raise ConfigError(f"method.short_side {list(self.short_side)} must lie between crop_size "
                              f"({self.crop_size}) and ascend")


def reversed_name(transform: str) -> bool:
    return transform.endswith("r")


class GDT(SSLMethod):
    """GDT (see the module docstring). Views: ``video_{t}`` and ``audio_{t}`` for every transform ``t``
    of the hypothesis (``1``, ``1r``, ``2``, ``2r``); data views ``clip_{p}``/``audio_{p}`` per position."""

    Config = GDTConfig
    eval_views = "gdt"
    other = "audio"  # the second modality (video-text GDT: "text")

    # ---- build ---------------------------------------------------------------------------------

    def build(self) -> None:
        from vidssl.methods.gdt_views import gdt_video_augment

        m = self.cfg.method
        self.terms = hypothesis_terms(m.hypothesis)
        self.transforms = transforms_of(self.terms)
        self.mlp_v = GDTHead(self.embed_dim, m.proj_hidden_dim, m.proj_dim, m.dropout, m.mlp_head)
        other_dim = self.build_other()
        self.mlp_a = GDTHead(other_dim, m.proj_hidden_dim, m.proj_dim, m.dropout, m.mlp_head)
        self.video_augment = gdt_video_augment(m.crop_size, m.short_side, m.flip_p, m.color_jitter,
                                               self.input_mean, self.input_std)

    def build_other(self) -> int:
        """Build the second modality's encoder and front end; return its embedding width."""
        from vidssl.methods.gdt_views import AudioView
        from vidssl.models.backbones import build_backbone

        m = self.cfg.method
        self.audio_encoder = build_backbone(m.audio_backbone, **m.audio_backbone_kwargs)
        self.audio_view = AudioView(m.audio_rate, m.audio_filters, z_normalise=True, spec_augment=m.spec_augment,
                                    volume_jitter=m.volume_jitter)
        return int(self.audio_encoder.embed_dim)

    @property
    def positions(self) -> list[str]:
        """Time positions the hypothesis needs: ``["1"]`` or ``["1", "2"]``."""
        return sorted({t[0] for t in self.transforms})

    @property
    def reverses(self) -> bool:
        return any(reversed_name(t) for t in self.transforms)

    # ---- data ----------------------------------------------------------------------------------

    def video_view(self, name: str):
        from vidssl.data.sampling import ViewSpec

        m = self.cfg.method
        return ViewSpec(name, num_frames=m.num_frames, canvas=(m.canvas, m.canvas), **self.frame_rate(m.stride))

    def other_views(self, position: str) -> list:
        """The data views of the second modality at ``position`` (aligned to ``clip_{position}``)."""
        from vidssl.data.sampling import ViewSpec

        m = self.cfg.method
        return [ViewSpec(f"audio_{position}", kind="audio", seconds=m.audio_seconds, sample_rate=m.audio_rate,
                         align_to=f"clip_{position}")]

    def make_plan(self):
        """``clip_1`` (+ ``clip_2`` for shift hypotheses) at independent random starts, each with its
        synchronous audio ``audio_k`` (B2); reversals are made on the device."""
        from vidssl.data.sampling import ViewsPlan

        views = []
        for p in self.positions:
            views += [self.video_view(f"clip_{p}"), *self.other_views(p)]
        return ViewsPlan(views)

    # ---- views ---------------------------------------------------------------------------------

    def other_augment(self, batch: dict, position: str) -> Tensor:
        """The second modality's view at ``position`` (forward in time)."""
        return self.audio_view(batch["clips"][f"audio_{position}"].float())

    def reverse_other(self, view: Tensor) -> Tensor:
        """Time reversal of a second-modality view: the spectrogram flipped along time (GDT)."""
        return view.flip(2)

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Per position p: ``video_p`` and ``audio_p``; for reversal hypotheses also ``video_pr`` (the clip
        played backwards, augmented independently) and ``audio_pr`` (the same spectrogram, time-flipped)."""
        data = batch["video"]
        views: dict[str, Tensor] = {}
        for p in self.positions:
            frames = data["clips"][f"clip_{p}"]
            other = self.other_augment(data, p)
            views[f"video_{p}"] = self.video_augment(frames)
            views[f"{self.other}_{p}"] = other
            if self.reverses:
                views[f"video_{p}r"] = self.video_augment(frames.flip(1))
                views[f"{self.other}_{p}r"] = self.reverse_other(other)
        return views

    def other_valid(self, batch: dict, position: str) -> Tensor | None:
        """``B`` bool: whether the second modality's view at ``position`` holds real data."""
        return batch.get("valid", {}).get(f"audio_{position}")

    # ---- loss ----------------------------------------------------------------------------------

    def encode_other(self, view: Tensor) -> Tensor:
        return self.audio_encoder(view)

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        data = batch["video"]
        features: dict[str, dict[str, Tensor]] = {"video": {}, self.other: {}}
        valid: dict[str, dict[str, Tensor]] = {self.other: {}}
        embedding = None
        for t in self.transforms:
            emb = self.encoder(views[f"video_{t}"])
            if embedding is None:
                embedding = emb
            features["video"][t] = F.normalize(self.mlp_v(emb), dim=1)
            features[self.other][t] = F.normalize(self.mlp_a(self.encode_other(views[f"{self.other}_{t}"])), dim=1)
            ok = self.other_valid(data, t[0])
            if ok is not None:
                valid[self.other][t] = ok.to(emb.device)
        out = gdt_nce_loss(features, valid, self.terms, self.cfg.method.temperature)
        if valid[self.other]:
            out[f"{self.other}_valid"] = valid[self.other][self.transforms[0]].float().mean()
        out["embedding"] = embedding
        return out

    # ---- optimiser ---------------------------------------------------------------------------------

    def param_groups(self) -> list[dict[str, Any]]:
        """One group: GDT decays every parameter (BN and biases included); no LARS."""
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("probe.")]
        return [param_group("gdt", params, weight_decay_mult=1.0, lars=False)]


__all__ = ["GDT", "GDTConfig"]
