"""BraVe: Broaden Your Views for Self-Supervised Video Learning (Recasens et al., ICCV 2021).

A *narrow* view (16 frames × stride 2 at 224², ≈1.2 s) and one or more *broad* views that start
at the same frame and cover ≈10 s (64 frames × stride 4 at 112² video, 10.24 s of log-mel audio,
or optical flow) go through separate backbones. One shared projector/predictor maps every
embedding to 128-d; each view's prediction regresses every other view's (stop-gradient)
projection. There is no EMA target and no negatives.

Spec: ``reference/brave-gdt-stica.md`` Part A. Where vidssl departs from the released code:

* **Optical flow.** The released code cannot train with flow (its README says so), so the V/F
  and V/AF rows were never reproducible from it. vidssl computes flow with OpenCV (DIS by
  default), caches it per video (``vidssl.data.flow``) and feeds it as a 2-channel broad view.
* **V/VVV.** The code supports one broad video view only; the name of the released "V/VVV"
  checkpoint suggests several. vidssl reads it as *three broad video views* of the same span,
  each with its own crop and augmentation (RandConv included), all through the one broad video
  backbone; the loss averages the two directions of every narrow↔broad pair (6 terms).
  ``broad: [video, video, video]`` in the preset.
* **LARS mask.** The released mask is inverted: weight decay and the trust ratio apply *only*
  to biases and BatchNorm parameters. vidssl applies them to every other parameter (the
  intended semantics) and offers ``faithful_lars_mask: true`` to reproduce the release.
* **Mel bands at 48 kHz.** Faithful: 16 of the 80 bands are always zero (see
  ``vidssl.data.audio``); ``audio_rate: 16000`` gives 80 live bands.
* **Crops.** BraVe samples each view's crop (area 0.3–1, aspect 0.5–2) from the whole frame;
  vidssl's workers first fit frames to a square canvas (256² narrow, 128² broad) and the crop
  is drawn inside it on the device, so the corners of wide frames are never seen.
* **Heads of different widths.** One shared head needs one input width; with TSM ×2 (4096-d)
  next to the 2048-d audio net, each width gets its own first projector layer and the rest is
  shared (:class:`BraveHeads`). ``shared_head: false`` gives every view its own head.

Flow view: ``B×2×T×H×W`` in [-1, 1] (displacement / ``flow_max_pixels`` at the view's
resolution), randomly cropped and flipped with the vectors rescaled and mirrored
(:func:`augment_flow`); its backbone is the narrow architecture with ``in_channels=2``.
The exported encoder (``encoder.safetensors``) is always the narrow video backbone, which
BraVe's protocol evaluates (``vidssl eval svm``, C = 1e-4). Inputs are in [0, 1] with no
mean/std normalisation, as in BraVe; evaluate with a view protocol that does the same
(``--views brave``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.config import _suggest
from vidssl.errors import ConfigError
from vidssl.methods.base import MethodConfig, SSLMethod

# ----------------------------------------------------------------------------------------------
# Loss (pure functions)
# ----------------------------------------------------------------------------------------------


def safe_normalize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``x / max(||x||, eps)`` along the last dim, with a finite gradient at ``x = 0``.

    BraVe's ``_safe_norm``: a norm at or below ``eps`` is replaced by ``eps``. The square root
    is taken of a clamped squared norm so that the gradient never divides by zero.
    """
    sq = (x * x).sum(dim=-1, keepdim=True)
    return x * torch.rsqrt(sq.clamp_min(eps * eps))


def regression_loss(prediction: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """BraVe's regression term: ``mean_batch 0.5 · ||n(prediction) − n(sg(target))||²``.

    Args:
        prediction: ``B×D`` predictor output of one view.
        target: ``B×D`` projection of the other view; gradients are stopped here.

    Returns a scalar; for non-zero vectors it equals ``mean(1 − cos(prediction, target))``, so
    it lies in [0, 2], is ≈1 for unrelated random vectors (BraVe's init check) and 0 when
    the two point the same way. ``regression_loss([1,2,3], [0,0,0]) == 0.5`` (A7).
    """
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f"regression_loss expects two B×D tensors of the same shape, got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}"
        )
    diff = safe_normalize(prediction, eps) - safe_normalize(target.detach(), eps)
    return 0.5 * (diff * diff).sum(dim=-1).mean()


def brave_loss(narrow: tuple[Tensor, Tensor], broads: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Symmetric BraVe loss between the narrow view and every broad view.

    Args:
        narrow: ``(z, h)`` of the narrow view: projection and prediction, both ``B×128``.
        broads: one ``(z, h)`` per broad view.

    Returns ``{"loss": mean of all 2·len(broads) terms, "loss_broad_to_narrow_i": …,
    "loss_narrow_to_broad_i": …}``. With one broad view this is BraVe's
    ``mean([reg(h_b, sg(z_n)), reg(h_n, sg(z_b))])``.
    """
    if not broads:
        raise ValueError("brave_loss needs at least one broad view")
    z_n, h_n = narrow
    out: dict[str, Tensor] = {}
    terms = []
    for i, (z_b, h_b) in enumerate(broads):
        b2n = regression_loss(h_b, z_n)
        n2b = regression_loss(h_n, z_b)
        out[f"loss_broad_to_narrow_{i}"] = b2n
        out[f"loss_narrow_to_broad_{i}"] = n2b
        terms += [b2n, n2b]
    out["loss"] = torch.stack(terms).mean()
    return out


# ----------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------


def _batch_norm(dim: int) -> nn.BatchNorm1d:
    # haiku BatchNorm(decay_rate=0.9, eps=1e-5) == torch momentum 0.1, eps 1e-5
    return nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1)


def _haiku_linear_init(layer: nn.Linear) -> None:
    """haiku Linear default: truncated normal (±2σ), σ = 1/sqrt(fan_in); zero bias."""
    std = 1.0 / math.sqrt(layer.in_features)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)


class ProjectAndPredict(nn.Module):
    """BraVe's head (A6): projector ``D→4096→BN→ReLU→128→BN`` and predictor ``128→4096→BN→ReLU→128``.

    ``forward(embedding B×D) -> (z B×128, h B×128)``. The released code shares *one* such head
    across all views (narrow video, broad video, audio, flow); embeddings of different widths
    therefore need the same ``D`` (2048 for TSM-50 ×1 and audio ResNet-50). When widths differ
    (TSM-50 ×2 narrow with a 2048-d audio net), :class:`BraveHeads` gives each width its own
    first projector layer and shares the rest (see there).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            _batch_norm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
            _batch_norm(out_dim),
        )
        self.predictor = nn.Sequential(
            nn.Linear(out_dim, hidden_dim),
            _batch_norm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _haiku_linear_init(m)

    def forward(self, embedding: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projector(embedding)
        return z, self.predictor(z)


class BraveHeads(nn.Module):
    """The projection heads of all views: one shared head (faithful) or one per view.

    Args:
        view_dims: embedding width per view name, e.g. ``{"narrow": 2048, "broad_audio": 2048}``.
        shared: True (the released code): every view calls the same ``ProjectAndPredict``.
            False: one head per view (the paper's notation may suggest this).

    With ``shared=True`` and views of different widths (only TSM ×2 narrow + audio does this;
    the released ×2 V/AF checkpoint cannot have shared one D→4096 matrix either) each width
    gets its own first ``Linear`` into the 4096-d hidden layer; everything after it is shared.
    BatchNorm statistics are computed per call, i.e. per view, as in the original.
    """

    def __init__(self, view_dims: dict[str, int], shared: bool = True, hidden_dim: int = 4096, out_dim: int = 128):
        super().__init__()
        self.shared = shared
        self.view_dims = dict(view_dims)
        if shared:
            dims = sorted(set(view_dims.values()))
            self.head = ProjectAndPredict(dims[0], hidden_dim, out_dim)
            # extra input layers for other widths (keyed by width), empty in every ×1 configuration
            self.input_layers = nn.ModuleDict()
            for d in dims[1:]:
                layer = nn.Linear(d, hidden_dim)
                _haiku_linear_init(layer)
                self.input_layers[str(d)] = layer
            self._first_dim = dims[0]
        else:
            self.heads = nn.ModuleDict({v: ProjectAndPredict(d, hidden_dim, out_dim) for v, d in view_dims.items()})

    def forward(self, view: str, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, h)`` for ``embedding`` (``B×D``) of ``view``."""
        if not self.shared:
            return self.heads[view](embedding)
        d = embedding.shape[-1]
        if d == self._first_dim:
            return self.head(embedding)
        projector = self.head.projector
        x = self.input_layers[str(d)](embedding)
        z = projector[4](projector[3](projector[2](projector[1](x))))
        return z, self.head.predictor(z)


# ----------------------------------------------------------------------------------------------
# Parameter groups: predictor lr ×10 and the LARS / weight-decay mask
# ----------------------------------------------------------------------------------------------


def is_bias_or_norm(name: str, param: Tensor) -> bool:
    """BraVe's ``exclude_bias_and_normalizers``: biases and BatchNorm parameters (1-d tensors)."""
    return param.ndim <= 1 or name.endswith(".bias")


def lars_adapted(name: str, param: Tensor, faithful_lars_mask: bool = False) -> bool:
    """Whether weight decay and the LARS trust ratio apply to ``param``.

    Intended semantics (default): every weight except biases and BN parameters. The released
    code passes ``exclude_bias_and_normalizers`` as optax's mask, where True means *apply*, so
    it adapts and decays *only* biases and BN parameters; ``faithful_lars_mask=True`` does that.
    """
    excluded = is_bias_or_norm(name, param)
    return excluded if faithful_lars_mask else not excluded


def brave_param_groups(
    named_params: list[tuple[str, Tensor]], predictor_lr_mult: float = 10.0, faithful_lars_mask: bool = False
) -> list[dict]:
    """Split parameters into optimiser groups: (predictor or not) × (LARS-adapted or not).

    Returns dicts with ``params``, ``lr_mult``, ``weight_decay_mult`` (1 or 0) and
    ``lars`` (bool: apply the trust ratio), plus ``name`` for logging; empty groups are dropped.
    A parameter is a predictor parameter when ``.predictor.`` is in its name (BraVe's
    ``.*predictor.*`` regex).
    """
    groups: dict[tuple[bool, bool], list[Tensor]] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        key = ("predictor." in name, lars_adapted(name, p, faithful_lars_mask))
        groups.setdefault(key, []).append(p)
    out = []
    for (is_pred, adapted), params in sorted(groups.items()):
        out.append(
            {
                "name": f"{'predictor' if is_pred else 'main'}_{'lars' if adapted else 'plain'}",
                "params": params,
                "lr_mult": predictor_lr_mult if is_pred else 1.0,
                "weight_decay_mult": 1.0 if adapted else 0.0,
                "lars": adapted,
            }
        )
    return out


# ----------------------------------------------------------------------------------------------
# Device-side augmentation of the flow view (video and audio augmentations live in data.transforms)
# ----------------------------------------------------------------------------------------------


def augment_flow(flow: Tensor, out_size: int, generator: torch.Generator | None = None) -> Tensor:
    """Random resized crop + horizontal flip of a flow batch, vectors kept consistent.

    Args:
        flow: ``B×2×T×H×W`` float in [-1, 1] (see :func:`vidssl.data.flow.flow_view`).
        out_size: output side (square).

    Returns ``B×2×T×out×out``. The crop uses BraVe's Inception-style window (area 0.3–1,
    aspect 0.5–2, one window per clip); the vectors are multiplied by the zoom factor of each
    axis (then re-clipped to [-1, 1]) and ``dx`` is negated where the clip is flipped. BraVe
    applies no colour augmentation to flow (there is none to apply); blur and RandConv are
    for RGB only.
    """
    b, c, t, h, w = flow.shape
    if c != 2:
        raise ValueError(f"augment_flow expects B×2×T×H×W, got {tuple(flow.shape)}")
    dev = flow.device
    area = torch.empty(b).uniform_(0.3, 1.0, generator=generator) * h * w
    log_ratio = torch.empty(b).uniform_(math.log(0.5), math.log(2.0), generator=generator)
    ratio = torch.exp(log_ratio)
    cw = torch.sqrt(area * ratio).clamp(max=w)
    ch = torch.sqrt(area / ratio).clamp(max=h)
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    flip = torch.rand(b, generator=generator) < 0.5
    # affine grid in normalised coordinates: output [-1,1] -> crop window
    sx, sy = cw / w, ch / h
    tx = (2 * x0 + cw) / w - 1
    ty = (2 * y0 + ch) / h - 1
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -sx, sx)
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    theta = theta.to(dev, flow.dtype)
    frames = flow.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    grid = F.affine_grid(theta.repeat_interleave(t, 0), [b * t, c, out_size, out_size], align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.reshape(b, t, c, out_size, out_size).permute(0, 2, 1, 3, 4)
    # vectors: displacement in output pixels = input displacement × (out / crop size)
    # vectors are in units of `max_pixels` pixels of the canvas; a canvas displacement d becomes
    # d · out/crop pixels of the output, so values scale by out/crop per axis
    zoom_x = (out_size / cw).to(dev, flow.dtype)
    zoom_y = (out_size / ch).to(dev, flow.dtype)
    sign_x = torch.where(flip, -1.0, 1.0).to(dev, flow.dtype)
    scale = torch.stack([zoom_x * sign_x, zoom_y], dim=1).view(b, 2, 1, 1, 1)
    return (out * scale).clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# LARS that can adapt 1-D parameters (the released mask)
# ----------------------------------------------------------------------------------------------


def _lars_scaled(p: Tensor, g: Tensor, weight_decay: float, eta: float, formula: str, eps: float) -> Tensor:
    """``(g + wd·p) · η · trust`` with the same two trust formulas as :class:`vidssl.optim.LARS`."""
    update = g.add(p, alpha=weight_decay) if weight_decay else g.clone()
    w_norm = torch.linalg.vector_norm(p)
    g_norm = torch.linalg.vector_norm(g)
    if formula == "pyslowfast":
        denom = g_norm + weight_decay * w_norm + eps
    else:
        denom = torch.linalg.vector_norm(update) + eps
    ratio = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / denom, torch.ones_like(w_norm))
    return update.mul_(ratio)


def build_brave_lars(groups: list[dict], lr: float, momentum: float, weight_decay: float, nesterov: bool,
                     trust_coefficient: float, formula: str) -> torch.optim.Optimizer:
    """:class:`vidssl.optim.LARS` whose groups flagged ``adapt_vectors`` also adapt and decay 1-D
    parameters (``vidssl.optim.LARS`` always leaves biases and BN parameters alone).

    Only needed for ``faithful_lars_mask=True``, where BraVe's released code adapts and decays
    *only* biases and BatchNorm parameters.
    """
    from vidssl.optim import LARS

    class _VectorLARS(LARS):
        @torch.no_grad()
        def step(self, closure=None):  # type: ignore[override]
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                if not group.get("adapt_vectors") or group["lars_exclude"]:
                    continue
                for p in group["params"]:
                    if p.grad is not None and p.ndim <= 1:
                        p.grad = _lars_scaled(p, p.grad, group["lars_weight_decay"], group["trust_coefficient"],
                                              self.formula, self.eps)
            super().step()
            return loss

    return _VectorLARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                       trust_coefficient=trust_coefficient, formula=formula)


# ----------------------------------------------------------------------------------------------
# The method
# ----------------------------------------------------------------------------------------------

BROAD_KINDS = ("video", "audio", "flow")


@dataclass
class BraveConfig(MethodConfig):
    """BraVe settings (the preset's ``method:`` section). Defaults = the released V/A config (A2, A3, A6, A8).

    Narrow view: ``num_frames`` × ``stride`` decoded to a ``canvas``² square and randomly
    cropped to ``crop_size`` (16 × 2, 224). ``backbone`` is the narrow video backbone, the
    encoder vidssl exports and evaluates.

    ``broad`` lists the broad views, each one of ``video``, ``audio``, ``flow``; they all start
    at the narrow view's first frame. ``[video]`` = V/V, ``[audio]`` = V/A, ``[flow]`` = V/F,
    ``[audio, flow]`` = V/AF, ``[video, video, video]`` = V/VVV (three independently augmented
    broad video views through one broad video backbone; see the module docstring).
    """

    name: str = "brave"
    backbone: str = "tsm_resnet50"
    num_frames: int = 16
    stride: int = 2
    canvas: int = 256
    crop_size: int = 224
    broad: list[str] = field(default_factory=lambda: ["audio"])
    broad_num_frames: int = 64
    broad_stride: int = 4
    broad_canvas: int = 128
    broad_crop_size: int = 112
    broad_video_backbone: str = ""  # "" = the narrow backbone's architecture (separate weights)
    broad_video_backbone_kwargs: dict = field(default_factory=dict)
    audio_backbone: str = "audio_resnet50"
    audio_backbone_kwargs: dict = field(default_factory=dict)
    audio_seconds: float = 10.24  # BraVe: (64 · 4 / 25 fps) s = 491,520 samples at 48 kHz
    audio_rate: int = 48000  # faithful; 16 of the 80 mel bands are empty at 48 kHz (use 16000 for none)
    flow_backbone: str = ""  # "" = the narrow backbone's architecture with 2 input channels
    flow_backbone_kwargs: dict = field(default_factory=dict)
    flow_method: Literal["dis", "farneback"] = "dis"
    flow_short_side: int = 128
    flow_max_pixels: float = 20.0
    proj_hidden_dim: int = 4096
    proj_dim: int = 128
    shared_head: bool = True
    predictor_lr_mult: float = 10.0
    faithful_lars_mask: bool = False
    warmup_steps: int = 5000

    def __post_init__(self):
        if not self.broad:
            raise ConfigError("method.broad needs at least one broad view (video, audio or flow)")
        for kind in self.broad:
            if kind not in BROAD_KINDS:
                raise ConfigError(f"method.broad: unknown view '{kind}'{_suggest(kind, BROAD_KINDS)}; "
                                  f"choose from {list(BROAD_KINDS)}")
        for kind in ("audio", "flow"):
            if self.broad.count(kind) > 1:
                raise ConfigError(f"method.broad: '{kind}' can appear once (only video views can repeat)")
        if self.audio_seconds <= 0 and "audio" in self.broad:
            raise ConfigError("method.audio_seconds must be > 0 with an audio broad view")
        if self.warmup_steps < 0:
            raise ConfigError("method.warmup_steps must be >= 0")


# view names in the dataset items
NARROW_VIEW = "narrow"
BROAD_VIDEO_VIEW = "broad_video"
BROAD_AUDIO_VIEW = "broad_audio"
BROAD_FLOW_VIEW = "broad_flow"


def brave_plan(m: "BraveConfig"):
    """Narrow and broad views sharing one start (BraVe's sampler, A2); short videos loop.

    Views: ``narrow`` (``num_frames`` × ``stride``), ``broad_video`` (if a broad video view is
    asked for; it also carries the audio), ``broad_audio`` (audio only: one token frame at a
    token 8² canvas, so that the view exists; its extent is the audio's) and ``broad_flow``
    (turned into flow by :class:`vidssl.data.flow.FlowVideoDataset`).
    """
    from vidssl.data.sampling import AlignedViewsPlan, ViewSpec

    audio_seconds = m.audio_seconds if "audio" in m.broad else 0.0
    broad_canvas = (m.broad_canvas, m.broad_canvas)
    views = [ViewSpec(NARROW_VIEW, m.num_frames, stride=m.stride, canvas=(m.canvas, m.canvas))]
    if "video" in m.broad:
        views.append(ViewSpec(BROAD_VIDEO_VIEW, m.broad_num_frames, stride=m.broad_stride, canvas=broad_canvas,
                              audio_seconds=audio_seconds))
    elif audio_seconds:
        views.append(ViewSpec(BROAD_AUDIO_VIEW, 1, canvas=(8, 8), audio_seconds=audio_seconds))
    if "flow" in m.broad:
        views.append(ViewSpec(BROAD_FLOW_VIEW, m.broad_num_frames, stride=m.broad_stride, canvas=broad_canvas))
    return AlignedViewsPlan(views)


class Brave(SSLMethod):
    """BraVe (see the module docstring). ``self.encoder`` is the narrow video backbone."""

    Config = BraveConfig
    input_mean = 0.0  # BraVe feeds pixels in [0, 1] (A4): no mean/std normalisation
    input_std = 1.0

    def build(self) -> None:
        from vidssl.data.audio import LogMelSpectrogram
        from vidssl.data.transforms import brave_broad_augment, brave_narrow_augment
        from vidssl.models.backbones import build_backbone

        m = self.cfg.method
        kinds = sorted(set(m.broad), key=BROAD_KINDS.index)
        backbones = {}
        if "video" in kinds:
            name = m.broad_video_backbone or m.backbone
            kwargs = m.broad_video_backbone_kwargs if m.broad_video_backbone else m.backbone_kwargs
            backbones["video"] = build_backbone(name, **kwargs)
        if "audio" in kinds:
            backbones["audio"] = build_backbone(m.audio_backbone, **m.audio_backbone_kwargs)
        if "flow" in kinds:
            name = m.flow_backbone or m.backbone
            kwargs = dict(m.flow_backbone_kwargs if m.flow_backbone else m.backbone_kwargs)
            if not m.flow_backbone:  # flow already is motion: never difference it
                kwargs.pop("residual_frames", None)
            kwargs.setdefault("in_channels", 2)
            backbones["flow"] = build_backbone(name, **kwargs)
        self.broad_backbones = nn.ModuleDict(backbones)
        dims = {"narrow": self.embed_dim, **{k: int(b.embed_dim) for k, b in backbones.items()}}
        self.heads = BraveHeads(dims, shared=m.shared_head, hidden_dim=m.proj_hidden_dim, out_dim=m.proj_dim)
        self.narrow_augment = brave_narrow_augment(m.crop_size)
        if "video" in kinds:
            self.broad_augment = brave_broad_augment(m.broad_crop_size)
        if "audio" in kinds:
            self.spectrogram = LogMelSpectrogram(sample_rate=m.audio_rate)

    # ---- data ------------------------------------------------------------------------------

    def make_plan(self):
        return brave_plan(self.cfg.method)

    def make_dataset(self, split):
        """Audio decoded at ``audio_rate``; the flow view comes from the per-video flow cache."""
        from vidssl.data.datasets import VideoDataset
        from vidssl.data.flow import FlowCache, FlowVideoDataset

        cfg, m = self.cfg, self.cfg.method
        common = dict(split=split, fold=cfg.data.fold, seed=cfg.trainer.seed, decoder=cfg.data.decoder,
                      audio_rate=m.audio_rate)
        if "flow" not in m.broad:
            return VideoDataset(self._manifest, self.make_plan(), **common)
        cache = FlowCache(self._manifest.root, method=m.flow_method, short_side=m.flow_short_side)
        return FlowVideoDataset(self._manifest, self.make_plan(), flow_views=[BROAD_FLOW_VIEW], flow_cache=cache,
                                max_pixels=m.flow_max_pixels, **common)

    # ---- views -----------------------------------------------------------------------------

    def _audio_key(self) -> str:
        return BROAD_VIDEO_VIEW if "video" in self.cfg.method.broad else BROAD_AUDIO_VIEW

    def augment(self, batch: dict) -> list[Tensor]:
        """uint8 clips / waveforms / flow → ``[narrow B×3×T×224², broad views in method.broad order]``.

        Broad video: ``B×3×64×112²`` (fresh crop, blur, colour and RandConv per view, so V/VVV's
        three views differ); audio: log-mel ``B×1×3072×80`` (no augmentation, as in BraVe);
        flow: ``B×2×64×112²`` (random crop + flip, vectors kept consistent).
        """
        m = self.cfg.method
        views = [self.narrow_augment(batch["video"][NARROW_VIEW])]
        for kind in m.broad:
            if kind == "video":
                views.append(self.broad_augment(batch["video"][BROAD_VIDEO_VIEW]))
            elif kind == "audio":
                views.append(self.spectrogram(batch["audio"][self._audio_key()].float()))
            else:
                views.append(augment_flow(batch["flow"][BROAD_FLOW_VIEW].float(), m.broad_crop_size))
        return views

    def compute_loss(self, views: list[Tensor], batch: dict) -> dict[str, Tensor]:
        narrow, broads = views[0], views[1:]
        f_n = self.encoder(narrow)
        outputs = []
        for kind, view in zip(self.cfg.method.broad, broads):
            outputs.append(self.heads(kind, self.broad_backbones[kind](view)))
        out = brave_loss(self.heads("narrow", f_n), outputs)
        out["embedding"] = f_n
        return out

    # ---- optimiser -------------------------------------------------------------------------

    def configure_optimizers(self):
        """LARS groups: predictor lr × ``predictor_lr_mult``; weight decay and the trust ratio on
        weights (intended) or on biases/BN only (``faithful_lars_mask``). The base sets each
        scheduled group's lr every step from ``base_lr`` and :meth:`_lr_factor`."""
        from vidssl.optim import build_optimizer

        cfg, m = self.cfg, self.cfg.method
        named = [(n, p) for n, p in self.named_parameters() if not n.startswith("probe.")]
        groups = []
        for g in brave_param_groups(named, m.predictor_lr_mult, m.faithful_lars_mask):
            groups.append({
                "name": g["name"], "params": g["params"], "lr_mult": g["lr_mult"],
                "lr": cfg.optim.lr * g["lr_mult"],
                "weight_decay": cfg.optim.weight_decay * g["weight_decay_mult"],
                "lars_exclude": not g["lars"],
                "adapt_vectors": g["lars"],
            })
        groups += self.probe_groups()
        o = cfg.optim
        if o.name == "lars":
            optimizer = build_brave_lars(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                         nesterov=o.nesterov, trust_coefficient=o.trust_coefficient,
                                         formula=o.lars_formula)
        else:
            optimizer = build_optimizer(o, groups, device_type=self.device.type)
        return self.start_schedule(optimizer)

    def _lr_factor(self, step: int) -> float:
        """BraVe's schedule: linear warmup over ``method.warmup_steps`` optimiser steps (5k), then
        cosine to ``optim.final_lr`` at the last step (optax ``warmup_cosine_decay_schedule``)."""
        from vidssl.optim import warmup_cosine

        o = self.cfg.optim
        if o.lr == 0:
            return 0.0
        total = self.total_steps
        warmup = min(self.cfg.method.warmup_steps, total)
        return warmup_cosine(step, total, warmup, o.lr, o.warmup_start_lr, o.final_lr) / o.lr
