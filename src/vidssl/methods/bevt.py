"""BEVT (Wang et al., CVPR 2022): masked image and masked video modeling of one Video Swin, in one step.

Reference: ``shared/reference/bassl-fgkvmem-bevt.md`` §3 (read from xyzforever/BEVT at 8881b21).

Every optimiser step takes one video batch (stream ``video``, view ``clip``) and one image batch
(stream ``image``, view ``image``: still images of an ``images`` root such as ImageNet-1K's
``ROOT/train/CLASS/*.JPEG``, as the seed; or one frame per video of any video root) through the
SAME backbone (:class:`~vidssl.models.backbones.swin.SwinBEVT`: the image path shares every block,
the relative-position table, the mask token and the final norm, §3.3) in one forward/backward:
``loss = loss_weight_video·L_video + loss_weight_image·L_image`` (§3.8; both 1 by default).

- Masks (§3.6, :mod:`vidssl.models.masking`): images a BEiT block-wise mask of ``num_masked`` of the
  ``G×G`` cells (98 of 14×14); clips one such mask copied over a wrap-around span of 50–100 % of the
  ``T/2`` temporal cells. Drawn on the device for the whole batch. The loss sees only masked cells;
  a clip's loss mask is its input mask upsampled ×2 in time (one output frame per input frame).
- Decoders (§3.4, :class:`BEVTDecoders`): the stage-4 map upsampled ×2 in space (``fpn`` /
  ``fpn_s``), concatenated with stage 3, projected (``lm_down`` / ``lm_down_st``), clips upsampled ×2
  in time (``fpn_t``), then the backbone's shared ``norm`` and one shared linear ``lm_head``.
- Targets (``method.target``): ``"dalle"`` (the DALL-E dVAE's token ids, BEVT's; needs
  ``tokenizer_path``), ``"vq"`` (a VQ tokenizer trained by ``vidssl tokenizer train``), or the
  tokenizer-free ``"pixels"`` (VideoMAE's normalised pixels, MSE) and ``"hog"`` (MaskFeat, MSE).
  Token targets use cross-entropy over masked cells (§3.5).
- Optimiser (§3.8): AdamW; parameters whose names contain ``absolute_pos_embed``,
  ``relative_position_bias_table`` or ``norm`` are not decayed, everything else is (biases and
  ``mask_token`` included, as mmcv's ``custom_keys`` did).
- ``image_only=True``: BEiT-style masked image modeling through the same 2-D path, the image-stream
  pretraining the original never released (§3.12); the primary (only) stream is then ``image``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.errors import ConfigError
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig
from vidssl.methods.guards import require
from vidssl.models.contract import InputContract
from vidssl.models.masking import block_masks, tube_masks, upsample_mask
from vidssl.optim import param_group

#: ImageNet mean/std in [0, 1] units (BEVT's Normalize: mean 123.675/116.28/103.53, std 58.395/57.12/57.375).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class BEVTConfig(MethodConfig):
    """BEVT settings; defaults are the seed's two-stream Swin-B recipe (reference §3.3–3.8).

    Video: ``num_frames`` 16 every ``stride`` 8 frames, the canvas's short side is rescaled and a
    ``crop_size`` square cut (``crop_scale``: the crop's area fraction of the canvas; the seed rescales
    the short side to U[256, 320] and crops 224, i.e. (224/320)²–(224/256)² = 0.49–0.766 of a
    256-canvas, aspect 1), flip ``flip_p``. Images: the same crop, ColorJitter(0.4, 0.4, 0.4) and flip.
    Masks: ``num_masked`` of the ``(crop_size/cell)²`` cells, rectangles of at least ``min_mask_cells``;
    a clip's span covers ``tube_range`` of its temporal cells.
    """

    name: str = "bevt"
    backbone: str = "swin_bevt_b"
    num_frames: int = 16
    stride: int = 8
    canvas: int = 256
    crop_size: int = 224
    crop_scale: tuple[float, float] = (0.49, 0.766)
    flip_p: float = 0.5
    image_jitter: float = 0.4
    cell: int = 16
    num_masked: int = 98
    min_mask_cells: int = 16
    tube_range: tuple[float, float] = (0.5, 1.0)
    target: Literal["dalle", "vq", "pixels", "hog"] = "dalle"
    tokenizer_path: str = ""
    tokenizer_size: int = 112  # the tokenizer's input side (BEVT: 112² Lanczos copies of the crop)
    loss_weight_video: float = 1.0
    loss_weight_image: float = 1.0
    image_only: bool = False
    # a BEVT checkpoint to start from (the seed's model.backbone.pretrained): an image-stream one is inflated
    init_checkpoint: str = ""
    no_decay_keys: list[str] = field(default_factory=lambda: ["absolute_pos_embed", "relative_position_bias_table", "norm"])
    probe: bool = False
    eval_views: str = ""


class BEVTDecoders(nn.Module):
    """BEVT's light FPN decoders (official names). Image: ``fpn`` (ConvTranspose2d ×2) on stage 4,
    concatenated with stage 3, ``lm_down``. Video: ``fpn_s`` (ConvTranspose3d (1,2,2)), concat,
    ``lm_down_st``, ``fpn_t`` (ConvTranspose3d (t,1,1), t = the patch's temporal size)."""

    def __init__(self, dim: int, temporal_patch: int = 2, image: bool = True, video: bool = True):
        super().__init__()
        half = dim // 2
        if image:
            self.fpn = nn.Sequential(nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2))
            self.lm_down = nn.Linear(dim + half, dim)
        if video:
            self.lm_down_st = nn.Sequential(nn.Linear(dim + half, dim))
            self.fpn_s = nn.Sequential(nn.ConvTranspose3d(dim, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2)))
            self.fpn_t = nn.Sequential(nn.ConvTranspose3d(dim, dim, kernel_size=(temporal_patch, 1, 1),
                                                          stride=(temporal_patch, 1, 1)))

    def image(self, x3: Tensor, x4: Tensor) -> Tensor:
        """Stage outputs ``B×1×2h×2w×C/2`` and ``B×1×h×w×C`` → ``B×2h×2w×C`` (before the final norm)."""
        up = self.fpn(x4[:, 0].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.lm_down(torch.cat([x3[:, 0], up], dim=-1))

    def video(self, x3: Tensor, x4: Tensor) -> Tensor:
        """``B×T'×2h×2w×C/2`` and ``B×T'×h×w×C`` → ``B×(t·T')×2h×2w×C`` (before the final norm)."""
        up = self.fpn_s(x4.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        x = self.lm_down_st(torch.cat([x3, up], dim=-1))
        return self.fpn_t(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)


def masked_loss(prediction: Tensor, target: Tensor, mask: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Loss over masked cells only. ``prediction``: ``B×T×G×G×D``; ``target``: same (regression) or
    ``B×T×G×G`` token ids; ``mask``: bool ``B×T×G×G``. Returns (loss, accuracy or 0).

    Equal to the loss on ``prediction[mask]`` (cross-entropy, or MSE averaged over elements), computed
    as a weighted sum over all cells: a boolean index would make the GPU wait for the host."""
    weight = mask.reshape(-1).float()  # N
    count = weight.sum()
    require(count > 0, "no masked cell in the batch: the loss would be empty (check num_masked and the grid)")
    pred = prediction.reshape(weight.shape[0], -1).float()  # N×D
    if kind == "tokens":
        labels = target.reshape(-1)
        loss = (F.cross_entropy(pred, labels, reduction="none") * weight).sum() / count.clamp_min(1)
        accuracy = ((pred.argmax(-1) == labels).float() * weight).sum().detach() / count.clamp_min(1)
        return loss, accuracy
    per_cell = (pred - target.reshape(weight.shape[0], -1).float()).square().mean(dim=1)
    return (per_cell * weight).sum() / count.clamp_min(1), pred.new_zeros(())


class BEVT(SSLMethod):
    """BEVT: one video batch and one image batch per step through one shared Swin (module docstring)."""

    Config = BEVTConfig
    eval_views = "demo"

    def build(self) -> None:
        m = self.cfg.method
        if not hasattr(self.encoder, "patch_embed_2d") or not hasattr(self.encoder, "stage_dims"):
            raise ConfigError(f"BEVT needs a SwinBEVT backbone (swin_bevt_b, swin_bevt_tiny), got '{m.backbone}'")
        if m.crop_size % m.cell:
            raise ConfigError(f"method.crop_size ({m.crop_size}) must be a multiple of method.cell ({m.cell})")
        grid = m.crop_size // m.cell
        if not 0 < m.num_masked <= grid * grid:
            raise ConfigError(f"method.num_masked must be in [1, {grid * grid}] for a {grid}×{grid} grid, got {m.num_masked}")
        if not 0 < m.tube_range[0] <= m.tube_range[1] <= 1:
            raise ConfigError(f"method.tube_range must satisfy 0 < low <= high <= 1, got {m.tube_range}")
        if m.loss_weight_video < 0 or m.loss_weight_image < 0:
            raise ConfigError("method.loss_weight_video and method.loss_weight_image must be >= 0")
        dim = self.embed_dim
        self.decoders = BEVTDecoders(dim, self.encoder.patch_size[0], image=True, video=not m.image_only)
        self.tokenizer = self.build_tokenizer()
        self.lm_head = nn.Linear(dim, self.target_dim())
        nn.init.trunc_normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)
        self.video_augment, self.image_augment = self.build_augmentation()
        # buffers, not tensors built from Python lists per step (a host-to-device copy that syncs)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD), persistent=False)
        if m.init_checkpoint:
            from vidssl.models.convert_bevt import init_from_bevt_checkpoint

            init_from_bevt_checkpoint(self, m.init_checkpoint)

    # ---- targets ------------------------------------------------------------------------------

    def build_tokenizer(self) -> nn.Module | None:
        m = self.cfg.method
        if m.target in ("pixels", "hog"):
            return None
        if not m.tokenizer_path:
            raise ConfigError(f"method.target={m.target} needs method.tokenizer_path=FILE "
                              f"({'the DALL-E encoder.pkl or its converted .safetensors' if m.target == 'dalle' else 'a tokenizer from vidssl tokenizer train'}); "
                              "or use method.target=pixels / hog, which need no tokenizer")
        from vidssl.models.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(m.tokenizer_path, kind=m.target)
        for p in tokenizer.parameters():
            p.requires_grad_(False)
        return tokenizer.eval()

    def target_dim(self) -> int:
        m = self.cfg.method
        if m.target == "pixels":
            return 3 * m.cell * m.cell
        if m.target == "hog":
            return 3 * 9 * (m.cell // 8) ** 2
        return int(self.tokenizer.vocab_size)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tokenizer is not None:  # frozen, always in eval mode (§3.5)
            self.tokenizer.eval()
        return self

    @torch.no_grad()
    def targets(self, frames: Tensor) -> Tensor:
        """Targets per cell from [0, 1] frames ``B×C×T×H×W`` / ``B×C×H×W`` → ``B×T×G×G(×D)``."""
        from vidssl.models.targets import hog_targets, pixel_targets

        m = self.cfg.method
        if m.target == "pixels":
            return pixel_targets(frames, m.cell)
        if m.target == "hog":
            return hog_targets(frames, m.cell)
        grid = m.crop_size // m.cell
        return self.tokenizer.tokens(frames, grid)

    # ---- data ---------------------------------------------------------------------------------

    def data_streams(self) -> dict:
        """``video`` (view ``clip``: ``num_frames`` every ``stride``, on the ``canvas``) from ``data``, and
        ``image`` (view ``image``: one still ``canvas``² frame) from ``streams.image``, whose root is either
        still images (``format: images``, e.g. ImageNet) or videos (a random frame of each); with
        ``image_only`` the image stream alone, from ``data``."""
        from vidssl.data.module import DataStream
        from vidssl.data.sampling import RandomClipPlan, ViewSpec

        m = self.cfg.method
        canvas = (m.canvas, m.canvas)
        image = RandomClipPlan(ViewSpec("image", kind="image", canvas=canvas))
        if m.image_only:
            return {"image": DataStream(image, self.cfg.data)}
        video = RandomClipPlan(ViewSpec("clip", num_frames=m.num_frames, canvas=canvas, **self.frame_rate(m.stride)))
        return {"video": DataStream(video, self.cfg.data), "image": DataStream(image, self.cfg.stream_data("image"))}

    def build_augmentation(self) -> tuple[nn.Module, nn.Module]:
        """Float [0, 1] views (normalised later, after the targets are taken from them)."""
        from vidssl.data.transforms import ColorJitter, Compose, RandomHorizontalFlip, RandomResizedCrop, ToFloatClip

        m = self.cfg.method
        geometry = [RandomResizedCrop(m.crop_size, scale=tuple(m.crop_scale), ratio=(1.0, 1.0))]
        if m.flip_p > 0:
            geometry.append(RandomHorizontalFlip(m.flip_p))
        video = Compose([ToFloatClip(), *geometry])
        jitter = [ColorJitter(m.image_jitter, m.image_jitter, m.image_jitter, 0.0)] if m.image_jitter > 0 else []
        image = Compose([ToFloatClip(), *geometry, *jitter])  # the seed jitters after its crop (§3.7)
        return video, image

    def normalise(self, x: Tensor) -> Tensor:
        """ImageNet mean/std normalisation of ``B×3×…`` [0, 1] views."""
        shape = (1, 3) + (1,) * (x.dim() - 2)
        return (x - self.pixel_mean.to(x.dtype).view(shape)) / self.pixel_std.to(x.dtype).view(shape)

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Views ``clip`` ``B×3×T×H×W`` and ``image`` ``B×3×H×W`` (normalised), their masks
        (``clip_mask`` ``B×T/2×G×G`` input mask, ``image_mask`` ``B×G×G``) and targets."""
        m = self.cfg.method
        grid = m.crop_size // m.cell
        views: dict[str, Tensor] = {}
        still = batch["image"]["clips"]["image"]  # B×H×W×C uint8
        image = self.image_augment(still.unsqueeze(1))[:, :, 0]  # B×3×h×w in [0, 1]
        views["image_target"] = self.targets(image)[:, 0]
        views["image_mask"] = block_masks(image.shape[0], grid, grid, m.num_masked, min_cells=m.min_mask_cells,
                                          device=image.device)
        views["image"] = self.normalise(image)
        if not m.image_only:
            clip = self.video_augment(batch["video"]["clips"]["clip"])  # B×3×T×h×w in [0, 1]
            t_patch = self.encoder.patch_size[0]
            if clip.shape[2] % t_patch:
                raise ConfigError(f"method.num_frames ({clip.shape[2]}) must be a multiple of the temporal patch {t_patch}")
            views["clip_target"] = self.targets(clip)
            views["clip_mask"] = tube_masks(clip.shape[0], clip.shape[2] // t_patch, grid, grid, m.num_masked,
                                            min_fraction=m.tube_range[0], max_fraction=m.tube_range[1],
                                            min_cells=m.min_mask_cells, device=clip.device)
            views["clip"] = self.normalise(clip)
        return views

    # ---- model --------------------------------------------------------------------------------

    def predict_image(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``B×3×H×W`` + mask ``B×G×G`` → (predictions ``B×1×G×G×D``, pooled stage-4 embedding ``B×C``)."""
        stages = self.encoder.forward_stages(image, mask)
        x = self.encoder.norm(self.decoders.image(stages[2], stages[3]))
        return self.lm_head(x).unsqueeze(1), self.encoder.norm(stages[3]).mean(dim=(1, 2, 3))

    def predict_video(self, clip: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``B×3×T×H×W`` + mask ``B×T/2×G×G`` → (predictions ``B×T×G×G×D``, pooled embedding ``B×C``)."""
        stages = self.encoder.forward_stages(clip, mask)
        x = self.encoder.norm(self.decoders.video(stages[2], stages[3]))
        return self.lm_head(x), self.encoder.norm(stages[3]).mean(dim=(1, 2, 3))

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        m = self.cfg.method
        kind = "tokens" if m.target in ("dalle", "vq") else "regression"
        pred_image, image_embedding = self.predict_image(views["image"], views["image_mask"])
        loss_image, acc_image = masked_loss(pred_image[:, 0], views["image_target"], views["image_mask"], kind)
        out = {"loss_image": loss_image.detach()}
        if kind == "tokens":
            out["mask_acc_image"] = acc_image
        if m.image_only:
            out.update(loss=m.loss_weight_image * loss_image, embedding=image_embedding.detach())
            return out
        pred_video, video_embedding = self.predict_video(views["clip"], views["clip_mask"])
        t_out = pred_video.shape[1]
        loss_mask = upsample_mask(views["clip_mask"], (t_out, *views["clip_mask"].shape[2:]))
        loss_video, acc_video = masked_loss(pred_video, views["clip_target"], loss_mask, kind)
        out.update(loss_video=loss_video.detach(),
                   loss=m.loss_weight_video * loss_video + m.loss_weight_image * loss_image,
                   embedding=video_embedding)
        if kind == "tokens":
            out["mask_acc_video"] = acc_video
        return out

    def configure_model(self) -> None:
        """The base's setup; with ``trainer.compile`` the stage forward BEVT calls is compiled too
        (the base compiles ``encoder.forward``, which pretraining does not use)."""
        compiled = getattr(self, "_configured", False)
        super().configure_model()
        if self.cfg.trainer.compile and not compiled:
            self.encoder.forward_stages = torch.compile(self.encoder.forward_stages,
                                                        backend=self.cfg.trainer.compile_backend)

    def param_groups(self) -> list[dict[str, Any]]:
        """Decayed / not decayed by name (the seed's ``custom_keys``: any name containing one of
        ``no_decay_keys``); the frozen tokenizer and the probe are left out."""
        keys = tuple(self.cfg.method.no_decay_keys)
        named = [(n, p) for n, p in self.named_parameters()
                 if p.requires_grad and not n.startswith(("probe.", "tokenizer."))]
        decay = [p for n, p in named if not any(k in n for k in keys)]
        no_decay = [p for n, p in named if any(k in n for k in keys)]
        groups = [param_group("bevt", decay, lars=False),
                  param_group("bevt_no_decay", no_decay, weight_decay_mult=0.0, lars=False)]
        return [g for g in groups if g["params"]]

    def input_contract(self) -> InputContract:
        m = self.cfg.method
        return InputContract(modality="video", value_range=(0.0, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             num_frames=m.num_frames, stride=None if m.target_fps else m.stride,
                             fps=m.target_fps / m.stride if m.target_fps else None, crop_size=m.crop_size,
                             canvas=m.canvas, eval_views=m.eval_views or self.eval_views)
