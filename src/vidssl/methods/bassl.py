"""BaSSL (Mun et al., 2022): boundary-aware self-supervised learning for movie scene segmentation,
and the shot-level SimCLR baselines of its paper (instance, temporal, ShotCoL).

Reference: ``../shared/reference/bassl-fgkvmem-bevt.md`` §1 (kakaobrain/bassl @ 0651dd6).

**Data.** An item is a window of ``2·shots_per_side + 1`` (17) consecutive shots of a movie, one frame
per shot (:class:`ShiftedShotWindowPlan`: the core's :class:`~vidssl.data.shot_windows.ShotWindowPlan`
with BaSSL's edge rule, §1.5: near the ends of a movie the window is shifted to stay inside it, not
padded). BaSSL picks one of a shot's three keyframes at random; vidssl decodes a random frame of the
shot from the movie (the keyframes are the shot's first, middle and last frame, so this draws from
the same shot; it needs the movie file — MovieNet's keyframe-only release is read by the scene
protocol, :mod:`vidssl.eval.scenes`, not by pretraining).

**Views** (device-side, §1.6): ``dense`` = the 17 shots with one random resized crop (scale 0.14-1,
ratio 3/4-4/3), flip (0.5), colour jitter (0.2, 0.2, 0.2, hue 0.05, p 0.8) and blur (σ 0.1-2, p 0.5)
shared by the whole window — BaSSL's transforms are consistent per list (crop, flip and, through its
``from_config`` quirk §1.15-4, jitter); its blur radius is drawn per image, here per window — then
ImageNet normalisation; ``sparse`` = the window's first and last shot (and the centre shot for
ShotCoL) augmented again with their own draws (BaSSL re-applies its transform to the same images).

**Model.** Shot encoder (ResNet-50, 2048-d, zero-init residual) on all 2 + 17 images of a window in
one batch; NCE head ``Linear(2048, 2048), ReLU, Linear(2048, 128)``, L2-normalised; CRN
(:class:`~vidssl.models.crn.ContextualRelationNetwork`, 2 layers, 8 heads, 2048 → 768); MSM head
(768 → 2048), PP head ``Linear(768, 2)``, CGM head ``Linear(1536, 2)``.

**Loss** (§1.8, weight 1 each, each switchable): DTW pseudo-boundary (:func:`~vidssl.methods.bassl_pretext.dtw_split`,
batched on the device), shot-scene matching (NCE τ 0.1, gathered negatives), masked shot modelling
(15 %, MSE to the detached shot features), pseudo-boundary prediction and contextual group matching
on an unmasked second CRN pass. ``shotcol=True`` adds ShotCoL's NCE (BaSSL+ShotCoL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.data.sampling import ShotWindowPlan  # (re-exported there; importing shot_windows first is circular)
from vidssl.methods.base import SSLMethod
from vidssl.methods.bassl_pretext import (
    boundary_prediction_loss,
    dtw_split,
    group_matching_loss,
    masked_shot_loss,
    msm_mask,
    nce_loss,
    shot_scene_matching_loss,
)
from vidssl.methods.config import MethodConfig
from vidssl.models.contract import InputContract
from vidssl.models.crn import ContextualRelationNetwork, MaskedShotHead
from vidssl.models.heads import MLPHead

__all__ = ["BaSSL", "BaSSLConfig", "ShotSimCLR", "ShotSimCLRConfig", "ShiftedShotWindowPlan", "IMAGENET_MEAN",
           "IMAGENET_STD", "shot_augmentation", "build_crn"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ShiftedShotWindowPlan(ShotWindowPlan):
    """A shot window that stays inside the movie: near its ends the window is shifted (BaSSL's
    ``SequenceShotSampler``), so every shot of it is a distinct real shot (movies of at least
    ``2·shots_per_side + 1`` shots; shorter movies repeat their end shots, ``shot_valid`` False)."""

    def sample(self, record, rng, key=None):
        count = len(self._shots(record))
        centre = 0 if key is None else int(key)
        if count >= 2 * self.shots_per_side + 1:
            centre = min(max(centre, self.shots_per_side), count - 1 - self.shots_per_side)
        return super().sample(record, rng, centre)

    def synthetic_extras(self, batch_size: int, generator) -> dict[str, Tensor]:
        """Per-item extras shaped like the loader's (:mod:`vidssl.data.synthetic`): windows of distinct shots."""
        s = self.clips_per_view
        return {"shot_labels": torch.randint(0, 2, (batch_size, s), generator=generator),
                "shot_valid": torch.ones(batch_size, s, dtype=torch.bool),
                "shot_index": torch.arange(s).repeat(batch_size, 1)}


@dataclass
class _ShotMethodConfig(MethodConfig):
    """What BaSSL and its shot-level baselines share: the shot encoder's views and the NCE head."""

    backbone: str = "image_resnet50"
    num_frames: int = 1
    canvas: int = 256  # frames fitted to a canvas×canvas square by the workers (BaSSL: 240P keyframes)
    crop_size: int = 224
    shots_per_side: int = 8  # BaSSL's neighbor_size: windows of 17 shots
    crop_scale: tuple[float, float] = (0.14, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.05)
    jitter_p: float = 0.8
    blur_p: float = 0.5
    head_hidden_dim: int = 2048
    head_dim: int = 128
    temperature: float = 0.1
    probe: bool = False  # movies have no class labels


def shot_augmentation(m) -> nn.Module:
    """BaSSL's training transform (§1.6) on ``B×S×H×W×C`` uint8 windows, shared by the window's shots."""
    from vidssl.data.transforms import ColorJitter, Compose, GaussianBlur, Normalize, RandomHorizontalFlip
    from vidssl.data.transforms import RandomResizedCrop, ToFloatClip

    steps = [ToFloatClip(), RandomResizedCrop(m.crop_size, scale=tuple(m.crop_scale), ratio=(3 / 4, 4 / 3))]
    if m.flip_p > 0:
        steps.append(RandomHorizontalFlip(m.flip_p))
    if m.jitter_p > 0:
        steps.append(ColorJitter(*m.jitter, p=m.jitter_p))
    if m.blur_p > 0:
        steps.append(GaussianBlur(kernel_size=13, sigma=(0.1, 2.0), p=m.blur_p))  # 13 taps cover σ = 2 px
    steps.append(Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return Compose(steps)


class _ShotMethod(SSLMethod):
    """Shared mechanics: the shot-window plan, the augmentation, encoding shots, the NCE head."""

    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    eval_views = "scenes"

    def make_plan(self):
        from vidssl.data.sampling import ViewSpec

        m = self.cfg.method
        view = ViewSpec("shots", kind="image", canvas=(m.canvas, m.canvas))
        return ShiftedShotWindowPlan(view, shots_per_side=self.plan_shots_per_side())

    def plan_shots_per_side(self) -> int:
        return self.cfg.method.shots_per_side

    def build_shot_modules(self) -> None:
        m = self.cfg.method
        self.nce_head = MLPHead(self.embed_dim, m.head_hidden_dim, m.head_dim, batch_norm=False)
        self.augmentation = shot_augmentation(m)

    def augment_shots(self, shots: Tensor) -> Tensor:
        """uint8 ``B×S×H×W×C`` → float ``B×S×C×h×w`` with one draw per window."""
        return self.augmentation(shots).transpose(1, 2)

    def to_model_layout(self, x: Tensor) -> Tensor:
        """Image windows ``B×S×C×h×w`` stay as they are (laid out per image in :meth:`encode`)."""
        return x

    def encode(self, images: Tensor) -> Tensor:
        """``B×S×C×h×w`` → shot features ``B×S×D`` (all images in one encoder batch)."""
        b, s = images.shape[:2]
        x = images.flatten(0, 1)
        if self.cfg.trainer.channels_last and x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x).view(b, s, -1)

    def embed(self, features: Tensor) -> Tensor:
        """NCE head, L2-normalised: ``…×D`` → ``…×head_dim``."""
        return F.normalize(self.nce_head(features), dim=-1)

    def input_contract(self) -> InputContract:
        m = self.cfg.method
        return InputContract(modality="image", value_range=(0.0, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             num_frames=1, crop_size=m.crop_size, canvas=m.canvas, eval_views="scenes")


# ------------------------------------------------------------------------------------------------
# BaSSL


@dataclass
class BaSSLConfig(_ShotMethodConfig):
    """BaSSL (§1.3-1.8); defaults are the seed's (``pretrain/cfg/default.yaml``, ``method/bassl.yaml``)."""

    name: str = "bassl"
    crn_hidden_dim: int = 768
    crn_layers: int = 2
    crn_heads: int = 8
    crn_intermediate_dim: int = 3072
    crn_dropout: float = 0.1
    mask_prob: float = 0.15
    shot_scene_matching: bool = True
    masked_shot_modeling: bool = True
    pseudo_boundary_prediction: bool = True
    contextual_group_matching: bool = True
    shotcol: bool = False  # BaSSL+ShotCoL: also ShotCoL's NCE on the centre shot (sparse = first, last, centre)


def build_crn(m, input_dim: int) -> ContextualRelationNetwork:
    """The CRN of a BaSSL config (or of the scene protocol's config, same field names)."""
    return ContextualRelationNetwork(input_dim, m.crn_hidden_dim, m.crn_layers, m.crn_heads, m.crn_intermediate_dim,
                                     2 * m.shots_per_side + 1, m.crn_dropout)


class BaSSL(_ShotMethod):
    """BaSSL pretraining (see the module docstring). Views: ``dense`` ``B×S×C×h×w``, ``sparse`` ``B×k×C×h×w``."""

    Config = BaSSLConfig

    def build(self) -> None:
        m = self.cfg.method
        if m.shots_per_side < 1:
            raise ValueError(f"method.shots_per_side must be >= 1 for BaSSL (pseudo-boundaries need a window), "
                             f"got {m.shots_per_side}")
        if not any((m.shot_scene_matching, m.masked_shot_modeling, m.pseudo_boundary_prediction,
                    m.contextual_group_matching, m.shotcol)):
            raise ValueError("every BaSSL loss is switched off; enable at least one of method.shot_scene_matching, "
                             "masked_shot_modeling, pseudo_boundary_prediction, contextual_group_matching, shotcol")
        self.build_shot_modules()
        if m.masked_shot_modeling or m.pseudo_boundary_prediction or m.contextual_group_matching:
            self.crn = build_crn(m, self.embed_dim)
        if m.masked_shot_modeling:
            self.msm_head = MaskedShotHead(m.crn_hidden_dim, self.embed_dim)
        if m.pseudo_boundary_prediction:
            self.pp_head = nn.Linear(m.crn_hidden_dim, 2)
        if m.contextual_group_matching:
            self.cgm_head = nn.Linear(2 * m.crn_hidden_dim, 2)

    @property
    def sparse_positions(self) -> list[int]:
        """Sparse shots in the window: first and last (BaSSL's "edge"), + centre with ShotCoL ("edge+center")."""
        s = 2 * self.cfg.method.shots_per_side + 1
        return [0, s - 1, s // 2] if self.cfg.method.shotcol else [0, s - 1]

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        shots = batch["video"]["clips"]["shots"]
        # stacked, not `shots[:, list]`: a list index is copied from the host and syncs the GPU
        sparse = torch.stack([shots[:, i] for i in self.sparse_positions], dim=1)
        return {"dense": self.augment_shots(shots), "sparse": self.augment_shots(sparse)}

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        m = self.cfg.method
        sparse, dense = views["sparse"], views["dense"]
        k, s = sparse.shape[1], dense.shape[1]
        features = self.encode(torch.cat([sparse, dense], dim=1))  # one BN batch, as BaSSL
        dense_f = features[:, k:]
        z = self.embed(features)
        sparse_z, dense_z = z[:, :k], z[:, k:]
        out: dict[str, Tensor] = {}
        split = dtw_split(1 - torch.einsum("bie,bje->bij", sparse_z[:, :2], dense_z).detach().float())
        if m.masked_shot_modeling:
            mask = msm_mask(dense_f.shape[0], s, m.mask_prob, device=dense_f.device)
            hidden, _ = self.crn(dense_f, mask)
            out["msm"] = masked_shot_loss(self.msm_head(hidden[:, 1:]), dense_f, mask)
        if m.shot_scene_matching:
            out["ssm"] = shot_scene_matching_loss(sparse_z[:, :2], dense_z, split, m.temperature)
        if m.shotcol:
            out["shotcol"] = nce_loss(sparse_z[:, 2], shotcol_neighbour(dense_z), m.temperature)
        if m.pseudo_boundary_prediction or m.contextual_group_matching:
            hidden, _ = self.crn(dense_f)
            hidden = hidden[:, 1:]
            if m.pseudo_boundary_prediction:
                out["pp"] = boundary_prediction_loss(hidden, split, self.pp_head)
            if m.contextual_group_matching:
                out["cgm"] = group_matching_loss(hidden, split, self.cgm_head)
        out["loss"] = torch.stack(list(out.values())).sum()
        out["boundary_mean"] = split.float().mean()
        out["embedding"] = dense_f[:, s // 2]
        return out


def shotcol_neighbour(dense_z: Tensor) -> Tensor:
    """ShotCoL's positive: the dense shot most similar to the window's centre (itself excluded),
    chosen without gradient; its embedding keeps its gradient. ``B×S×E`` → ``B×E``."""
    centre = dense_z.shape[1] // 2
    with torch.no_grad():
        similarity = torch.einsum("be,bse->bs", dense_z[:, centre], dense_z)
        similarity[:, centre] = float("-inf")
        nearest = similarity.argmax(dim=1)
    return dense_z[torch.arange(dense_z.shape[0], device=dense_z.device), nearest]


# ------------------------------------------------------------------------------------------------
# shot-level SimCLR baselines (§1.9)


@dataclass
class ShotSimCLRConfig(_ShotMethodConfig):
    """SimCLR on shots: ``positive`` picks the pair (instance / temporal / shotcol)."""

    name: str = "shot_simclr"
    positive: Literal["instance", "temporal", "shotcol"] = "instance"


class ShotSimCLR(_ShotMethod):
    """BaSSL's shot-level baselines; NCE τ 0.1 with gathered negatives between two shot views:

    * ``instance``: two augmentations of the same frame of one shot;
    * ``temporal``: the shot and another shot drawn uniformly from its ±``shots_per_side`` window. The
      original computes the neighbour and then reloads the SAME shot (§1.9 bug), which makes it the
      instance baseline with another keyframe; vidssl uses the neighbour, as the paper describes;
    * ``shotcol``: the centre shot (its own augmentation) and its nearest neighbour among the window's
      shots under the current head embedding (ShotCoL, §1.9).
    """

    Config = ShotSimCLRConfig

    def build(self) -> None:
        if self.cfg.method.positive != "instance" and self.cfg.method.shots_per_side < 1:
            raise ValueError(f"method.positive={self.cfg.method.positive} needs neighbouring shots: "
                             "method.shots_per_side must be >= 1")
        self.build_shot_modules()

    def plan_shots_per_side(self) -> int:
        return 0 if self.cfg.method.positive == "instance" else self.cfg.method.shots_per_side

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        stream = batch["video"]
        shots = stream["clips"]["shots"]
        centre = shots.shape[1] // 2
        anchor = shots[:, centre : centre + 1]
        positive = self.cfg.method.positive
        if positive == "shotcol":
            return {"anchor": self.augment_shots(anchor), "window": self.augment_shots(shots)}
        if positive == "temporal":
            other = _other_shot(stream["shot_index"], centre)
            rows = torch.arange(shots.shape[0], device=shots.device)
            return {"anchor": self.augment_shots(anchor), "positive": self.augment_shots(shots[rows, other][:, None])}
        return {"anchor": self.augment_shots(anchor), "positive": self.augment_shots(anchor)}

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        m = self.cfg.method
        anchor_f = self.encode(views["anchor"])[:, 0]
        if "window" in views:
            window_z = self.embed(self.encode(views["window"]))
            positive_z = shotcol_neighbour(window_z)
        else:
            positive_z = self.embed(self.encode(views["positive"])[:, 0])
        loss = nce_loss(self.embed(anchor_f), positive_z, m.temperature)
        return {"loss": loss, "nce": loss, "embedding": anchor_f}


def _other_shot(shot_index: Tensor, centre: int) -> Tensor:
    """Per window, a uniformly drawn position whose shot differs from the centre shot (windows at the
    ends of a movie repeat shots); the centre itself when the window holds one shot only."""
    shot_index = shot_index.to(torch.long)
    different = shot_index != shot_index[:, centre : centre + 1]
    is_centre = torch.arange(shot_index.shape[1], device=shot_index.device) == centre  # no host-to-device copy
    weights = different.float() + (~different.any(dim=1, keepdim=True)).float() * is_centre.float()[None, :]
    return torch.multinomial(weights, 1).squeeze(1)
