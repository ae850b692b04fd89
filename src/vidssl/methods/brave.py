"""BraVe: Broaden Your Views for Self-Supervised Video Learning (Recasens et al., ICCV 2021).

A *narrow* view (16 frames × stride 2 at 224², 1.28 s) and one or more *broad* views that start
at the same frame and cover 10.24 s (64 frames × stride 4 at 112² video, 10.24 s of log-mel audio,
or optical flow; spans at 25 fps, to which every video is resampled: ``target_fps``) go through
separate backbones. One shared projector/predictor maps every
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

* **Missing audio.** A clip whose file has no audio track, or whose track does not cover the
  broad span, is left out of the two audio terms of the loss (``valid["broad_audio"]``), not
  regressed as 10 s of silence; ``train/audio_valid`` logs the fraction kept.

Views (names in the batch and in ``augment``'s output): ``narrow`` (video), ``broad_video``
(``broad_video_1..3`` for V/VVV), ``broad_audio`` (waveform, its own sample rate; log-mel on the
device) and ``broad_flow`` (cached optical flow: ``B×2×T×H×W`` in [-1, 1], displacement /
``flow_max_pixels`` at the view's resolution, randomly cropped and flipped with the vectors
rescaled and mirrored by :func:`vidssl.data.transforms.augment_flow`); the flow backbone is the
narrow architecture with ``in_channels=2``. Loss: :func:`vidssl.losses.brave_loss`; heads:
:class:`vidssl.models.heads.BraveHeads`.
The exported encoder (``encoder.safetensors``) is always the narrow video backbone, which
BraVe's protocol evaluates (``vidssl eval svm``, C = 1e-4). Inputs are in [0, 1] with no
mean/std normalisation, as in BraVe; evaluate with a view protocol that does the same
(``--views brave``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from vidssl.config import _suggest
from vidssl.errors import ConfigError
from vidssl.losses import brave_loss
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig
from vidssl.models.heads import BraveHeads
from vidssl.optim import is_bias_or_norm, param_group

# ----------------------------------------------------------------------------------------------
# Parameter groups: predictor lr ×10 and the LARS / weight-decay mask
# ----------------------------------------------------------------------------------------------


def lars_adapted(name: str, param: Tensor, faithful_lars_mask: bool = False) -> bool:
    """Whether weight decay and the LARS trust ratio apply to ``param``.

    Intended semantics (default): every weight except biases and BN parameters. The released
    code passes ``exclude_bias_and_normalizers`` as optax's mask, where True means *apply*, so
    it adapts and decays *only* biases and BN parameters; ``faithful_lars_mask=True`` does that.
    """
    excluded = is_bias_or_norm(name, param)
    return excluded if faithful_lars_mask else not excluded


def brave_param_groups(named_params: list[tuple[str, Tensor]], predictor_grad_mult: float = 10.0,
                       faithful_lars_mask: bool = False, predictor_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Optimiser groups (:func:`vidssl.optim.param_group`): (predictor or not) × (LARS-adapted or not).

    A parameter is a predictor parameter when ``predictor.`` is in its name (BraVe's
    ``.*predictor.*`` regex). BraVe's ×10 multiplies the predictor's *gradient* before weight
    decay and the LARS trust ratio (``predictor_grad_mult``, as the released optimiser chain
    does); ``predictor_lr_mult`` multiplies its learning rate instead (what an adaptive optimiser
    such as AdamW needs for the same intent: Adam's update ignores a gradient's scale). Adapted
    groups get weight decay and the trust ratio, the others neither (:func:`lars_adapted`).
    Empty groups are dropped.
    """
    groups: dict[tuple[bool, bool], list[Tensor]] = {}
    for name, p in named_params:
        if p.requires_grad:
            groups.setdefault(("predictor." in name, lars_adapted(name, p, faithful_lars_mask)), []).append(p)
    return [param_group(f"{'predictor' if is_pred else 'main'}_{'lars' if adapted else 'plain'}", params,
                        lr_mult=predictor_lr_mult if is_pred else 1.0,
                        grad_mult=predictor_grad_mult if is_pred else 1.0, weight_decay_mult=1.0 if adapted else 0.0,
                        lars=adapted)
            for (is_pred, adapted), params in sorted(groups.items())]


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
    target_fps: float | None = 25.0  # BraVe samples every video at 25 fps; strides count frames at 25 fps
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
    predictor_grad_mult: float = 10.0  # BraVe's ×10, on the predictor's gradient (before decay and LARS)
    predictor_lr_mult: float = 1.0  # a learning-rate multiplier instead (the AdamW tiny presets use it)
    faithful_lars_mask: bool = False

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


NARROW_VIEW = "narrow"
BROAD_VIDEO_VIEW = "broad_video"
BROAD_AUDIO_VIEW = "broad_audio"
BROAD_FLOW_VIEW = "broad_flow"


def brave_plan(m: "BraveConfig"):
    """Narrow and broad views sharing one start (BraVe's sampler, A2): at 25 fps whatever the source
    rate (``target_fps``), the start drawn so the narrow view fits, broad views looped past the end.

    Views: ``narrow`` (``num_frames`` × ``stride``, the anchor) and, aligned to it,
    ``broad_video`` (decoded once even for V/VVV), ``broad_audio`` (an audio view of
    ``audio_seconds`` at ``audio_rate``) and ``broad_flow`` (cached optical flow of the broad
    frames).
    """
    from functools import partial

    from vidssl.data.sampling import FlowOptions, ViewsPlan, ViewSpec, frame_rate

    rate = partial(frame_rate, target_fps=m.target_fps)  # BraVe resamples every video to 25 fps first
    broad_canvas = (m.broad_canvas, m.broad_canvas)
    views = [ViewSpec(NARROW_VIEW, num_frames=m.num_frames, canvas=(m.canvas, m.canvas), **rate(m.stride))]
    if "video" in m.broad:
        views.append(ViewSpec(BROAD_VIDEO_VIEW, num_frames=m.broad_num_frames, canvas=broad_canvas,
                              align_to=NARROW_VIEW, **rate(m.broad_stride)))
    if "audio" in m.broad:
        views.append(ViewSpec(BROAD_AUDIO_VIEW, kind="audio", seconds=m.audio_seconds, sample_rate=m.audio_rate,
                              align_to=NARROW_VIEW))
    if "flow" in m.broad:
        views.append(ViewSpec(BROAD_FLOW_VIEW, kind="flow", num_frames=m.broad_num_frames, canvas=broad_canvas,
                              align_to=NARROW_VIEW, flow=FlowOptions(m.flow_method, m.flow_short_side, m.flow_max_pixels),
                              **rate(m.broad_stride)))
    # the narrow start is drawn over the whole video; broad views past the end loop (A2)
    return ViewsPlan(views, fit="anchor")


class Brave(SSLMethod):
    """BraVe (see the module docstring). ``self.encoder`` is the narrow video backbone."""

    Config = BraveConfig
    input_mean = 0.0  # BraVe feeds pixels in [0, 1] (A4): no mean/std normalisation
    input_std = 1.0
    eval_views = "brave"

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

    def make_plan(self):
        return brave_plan(self.cfg.method)

    def broad_view_names(self) -> dict[str, str]:
        """Augmented broad view name -> its kind, in ``method.broad`` order (``broad_video_1..n``
        when the broad video view repeats, as in V/VVV)."""
        broad = self.cfg.method.broad
        videos = broad.count("video")
        names, seen = {}, 0
        for kind in broad:
            if kind == "video":
                seen += 1
                names[BROAD_VIDEO_VIEW if videos == 1 else f"{BROAD_VIDEO_VIEW}_{seen}"] = kind
            else:
                names[BROAD_AUDIO_VIEW if kind == "audio" else BROAD_FLOW_VIEW] = kind
        return names

    def augment(self, batch: dict) -> dict[str, Tensor]:
        """uint8 clips / waveforms / flow → named views: ``narrow`` ``B×3×T×224²`` and the broad views.

        Broad video: ``B×3×64×112²`` (a fresh crop, blur, colour and RandConv per view, so V/VVV's
        three views of the one decoded broad clip differ); audio: log-mel ``B×1×3072×80`` (no
        augmentation, as in BraVe); flow: ``B×2×64×112²`` (random crop + flip, vectors kept consistent).
        """
        from vidssl.data.transforms import augment_flow

        m = self.cfg.method
        clips = batch["video"]["clips"]
        views = {NARROW_VIEW: self.narrow_augment(clips[NARROW_VIEW])}
        for name, kind in self.broad_view_names().items():
            if kind == "video":
                views[name] = self.broad_augment(clips[BROAD_VIDEO_VIEW])
            elif kind == "audio":
                views[name] = self.spectrogram(clips[BROAD_AUDIO_VIEW].float())
            else:
                views[name] = augment_flow(clips[BROAD_FLOW_VIEW].float(), m.broad_crop_size)
        return views

    def compute_loss(self, views: dict[str, Tensor], batch: dict) -> dict[str, Tensor]:
        f_n = self.encoder(views[NARROW_VIEW])
        broads = {name: self.heads(kind, self.broad_backbones[kind](views[name]))
                  for name, kind in self.broad_view_names().items()}
        masks = {}
        valid = batch["video"].get("valid", {})
        if BROAD_AUDIO_VIEW in broads and BROAD_AUDIO_VIEW in valid:
            masks[BROAD_AUDIO_VIEW] = valid[BROAD_AUDIO_VIEW].to(f_n.device)
        out = brave_loss(self.heads("narrow", f_n), broads, masks)
        if BROAD_AUDIO_VIEW in masks:
            out["audio_valid"] = masks[BROAD_AUDIO_VIEW].float().mean()
        out["embedding"] = f_n
        return out

    def param_groups(self) -> list[dict[str, Any]]:
        """LARS groups: predictor gradient × ``predictor_grad_mult`` (and lr × ``predictor_lr_mult``);
        weight decay and the trust ratio on weights (intended) or on biases/BN only (``faithful_lars_mask``)."""
        m = self.cfg.method
        named = [(n, p) for n, p in self.named_parameters() if not n.startswith("probe.")]
        return brave_param_groups(named, m.predictor_grad_mult, m.faithful_lars_mask, m.predictor_lr_mult)
