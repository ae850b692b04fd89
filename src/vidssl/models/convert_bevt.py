"""BEVT's released checkpoints into vidssl, and 2-D → 3-D inflation (reference §3.2–3.3, §3.9).

Two files were released (README, Google Drive):

- ``swin_base_image_stream_pretrain.pth`` — the image stream (a 2-D Swin-B: ``patch_embed.proj.weight``
  is ``128×3×4×4``, every ``relative_position_bias_table`` is ``13·13×heads``), the initialisation of
  two-stream pretraining through the seed's ``inflate_weights``;
- the two-stream checkpoint (mmcv: ``{"meta", "state_dict", "optimizer"}``; ``backbone.*`` = SwinBEVT's
  parameters with the official names, the decoders ``backbone.fpn*``/``backbone.lm_down*`` and
  ``cls_head.lm_head.*``).

Both are read with PyTorch's restricted unpickler (``weights_only=True``): tensors and plain containers
only, nothing of the file runs. :func:`read_bevt_checkpoint` finds the weights under ``state_dict`` /
``model`` / ``module`` and strips ``module.``, ``backbone.`` and ``encoder.`` (as the seed does);
:func:`split_bevt_state` separates the encoder, the decoders and the ``lm_head``;
:func:`inflate_2d_state` is the seed's inflation: the 2-D patch kernel goes to ``patch_embed_2d`` and,
repeated over the temporal patch and divided by its length, to the 3-D ``patch_embed``; each 2-D table
(bicubic-resized when its window differs) is tiled ``2·Wd-1`` times along the temporal offsets;
``fc_norm`` becomes ``norm``; ``relative_position_index`` and ``attn_mask`` are dropped. A static clip
through the inflated model then gives what the image gave through the 2-D one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vidssl.errors import UserError
from vidssl.models.contract import InputContract
from vidssl.models.safe_checkpoint import Stub, load_checkpoint_safely, load_matching

PREFIXES = (r"^module\.", r"^backbone\.", r"^encoder\.")
DECODER_NAMES = ("fpn.", "fpn_s.", "fpn_t.", "lm_down.", "lm_down_st.")


#: Metadata classes an mmcv checkpoint may carry, read as :class:`Stub` (nothing else is accepted).
STAND_INS = ("mmcv.utils.config.ConfigDict", "mmcv.utils.config.Config", "argparse.Namespace")


def read_bevt_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The weights of a BEVT ``.pth`` (two-stream or image-stream), prefixes stripped, read safely."""
    data = load_checkpoint_safely(path, "BEVT", STAND_INS)
    if not isinstance(data, dict):
        raise UserError(f"'{path}' is not a checkpoint (expected a dict of weights)")
    for key in ("state_dict", "model", "module"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    state = {}
    for name, value in data.items():
        if not isinstance(value, Tensor):
            continue
        for pattern in PREFIXES:
            name = re.sub(pattern, "", name)
        state[name] = value
    if not state:
        raise UserError(f"'{path}' holds no weights")
    return state


def split_bevt_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """(encoder, decoders, lm_head) weights of a two-stream BEVT state (``cls_head.lm_head.*`` → head)."""
    encoder, decoders, head = {}, {}, {}
    for name, value in state.items():
        if "relative_position_index" in name or "attn_mask" in name:
            continue
        if name.startswith(("cls_head.lm_head.", "lm_head.")):
            head[name.split("lm_head.", 1)[1]] = value
        elif name.startswith(DECODER_NAMES):
            decoders[name] = value
        elif not name.startswith("cls_head."):
            encoder[name] = value
    return encoder, decoders, head


def is_2d_state(state: dict[str, Tensor]) -> bool:
    weight = state.get("patch_embed.proj.weight")
    return weight is not None and weight.dim() == 4


def inflate_2d_state(state: dict[str, Tensor], patch_size: tuple[int, int, int], window_size: tuple[int, int, int]) -> dict[str, Tensor]:
    """The seed's ``inflate_weights``: a 2-D Swin state → SwinBEVT state (see the module docstring)."""
    out = {k: v for k, v in state.items() if "relative_position_index" not in k and "attn_mask" not in k}
    if "fc_norm.weight" in out:
        out["norm.weight"], out["norm.bias"] = out.pop("fc_norm.weight"), out.pop("fc_norm.bias")
    if not is_2d_state(out):
        raise UserError("the checkpoint's patch_embed.proj.weight is not a 2-D kernel (out×3×4×4): not an image-stream checkpoint")
    for part in ("proj.weight", "proj.bias", "norm.weight", "norm.bias"):
        if f"patch_embed.{part}" in out:
            out[f"patch_embed_2d.{part}"] = out[f"patch_embed.{part}"]
    t = patch_size[0]
    out["patch_embed.proj.weight"] = out["patch_embed.proj.weight"].unsqueeze(2).repeat(1, 1, t, 1, 1) / t
    wd, wh, ww = window_size
    plane = (2 * wh - 1) * (2 * ww - 1)
    for name in [k for k in out if k.endswith("relative_position_bias_table")]:
        table = out[name]
        if table.shape[0] != plane:  # the seed resizes the 2-D table bicubically to the new window
            side = int(round(table.shape[0] ** 0.5))
            heads = table.shape[1]
            table = F.interpolate(table.t().reshape(1, heads, side, side), size=(2 * wh - 1, 2 * ww - 1),
                                  mode="bicubic").reshape(heads, plane).t()
        out[name] = table.repeat(2 * wd - 1, 1)
    return out


def resize_bias_tables(state: dict[str, Tensor], from_window: tuple[int, int, int],
                       to_window: tuple[int, int, int]) -> dict[str, Tensor]:
    """Every 3-D ``relative_position_bias_table`` of ``state`` resized trilinearly from ``from_window``'s
    ``(2Wd-1)(2Wh-1)(2Ww-1)`` grid to ``to_window``'s (the seed's SSv2 fine-tuning: pretrained 8×7×7 → 16×7×7,
    ``pretrained_window_size`` in ``swin_transformer.py``)."""
    src = tuple(2 * w - 1 for w in from_window)
    dst = tuple(2 * w - 1 for w in to_window)
    out = dict(state)
    for name in [k for k in state if k.endswith("relative_position_bias_table")]:
        table = state[name]
        heads = table.shape[1]
        if table.shape[0] != src[0] * src[1] * src[2]:
            raise UserError(f"'{name}' has {table.shape[0]} rows, not the {src[0]}·{src[1]}·{src[2]} of window {tuple(from_window)}")
        if src != dst:
            grid = table.t().reshape(1, heads, *src)
            out[name] = F.interpolate(grid, size=dst, mode="trilinear").reshape(heads, -1).t()
    return out


def bevt_contract(num_frames: int = 32, stride: int = 2, eval_views: str = "bevt_k400") -> InputContract:
    """How the seed fine-tuned BEVT encoders (§3.9): ImageNet mean/std, 224² crops of a 256 short side."""
    from vidssl.methods.bevt import IMAGENET_MEAN, IMAGENET_STD

    return InputContract(modality="video", mean=IMAGENET_MEAN, std=IMAGENET_STD, num_frames=num_frames, stride=stride,
                         crop_size=224, canvas=256, eval_views=eval_views)


def load_bevt_encoder(path_or_state: str | Path | dict[str, Tensor], backbone: str = "swin_bevt_b",
                      kwargs: dict[str, Any] | None = None,
                      pretrained_window: tuple[int, int, int] | None = None) -> torch.nn.Module:
    """A BEVT checkpoint (two-stream, or image-stream inflated) as a SwinBEVT encoder in eval mode.

    The official image path's behaviour (``image_quirks=True``) is kept, since the weights were trained with it.
    ``pretrained_window``: the window the (3-D) checkpoint was trained with, when the backbone's differs
    (e.g. ``(8, 7, 7)`` into ``window_size=(16, 7, 7)`` for SSv2): the tables are resized trilinearly.
    """
    from vidssl.models.backbones import build_backbone

    state = path_or_state if isinstance(path_or_state, dict) else read_bevt_checkpoint(path_or_state)
    kwargs = {"image_quirks": True, **(kwargs or {})}
    model = build_backbone(backbone, **kwargs)
    encoder, _, _ = split_bevt_state(state)
    if is_2d_state(encoder):
        encoder = inflate_2d_state(encoder, model.patch_size, model.window_size)
    elif pretrained_window is not None:
        encoder = resize_bias_tables(encoder, tuple(pretrained_window), model.window_size)
    # an image-stream checkpoint has no mask token when its pretraining did not save one: keep ours
    load_matching(model, encoder, "the BEVT checkpoint", backbone, optional=("mask_token",))
    model.backbone_kwargs = kwargs
    return model.eval()


def init_from_bevt_checkpoint(method: torch.nn.Module, path: str | Path) -> dict[str, int]:
    """Initialise a BEVT method's ``encoder`` (inflating an image-stream checkpoint), and its ``decoders``
    and ``lm_head`` where the checkpoint has them with matching shapes (the seed's
    ``model.backbone.pretrained=...``). Returns how many tensors went to each part."""
    state = read_bevt_checkpoint(path)
    encoder_state, decoders, head = split_bevt_state(state)
    if is_2d_state(encoder_state):
        encoder_state = inflate_2d_state(encoder_state, method.encoder.patch_size, method.encoder.window_size)
    loaded = {}
    for part, weights in (("encoder", encoder_state), ("decoders", decoders), ("lm_head", head)):
        module = getattr(method, part)
        own = module.state_dict()
        unexpected = sorted(k for k in weights if k not in own)
        if part == "encoder" and unexpected:
            raise UserError(f"'{path}': encoder weights {unexpected[:5]} do not exist in {type(module).__name__}")
        usable = {k: v for k, v in weights.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        if part == "encoder" and len(usable) != len(weights):
            wrong = sorted(k for k in weights if k not in usable)
            raise UserError(f"'{path}': encoder tensors {wrong[:5]} have other shapes than the configured backbone")
        own.update(usable)
        module.load_state_dict(own)
        loaded[part] = len(usable)
    return loaded


def convert_bevt_checkpoint(pth_path: str | Path, out_dir: str | Path, backbone: str = "swin_bevt_b",
                            kwargs: dict[str, Any] | None = None,
                            pretrained_window: tuple[int, int, int] | None = None) -> dict[str, Path]:
    """Write ``encoder.safetensors`` (the SwinBEVT with BEVT's fine-tuning input contract) and, for a
    two-stream checkpoint, ``bevt_heads.safetensors`` (decoders + ``lm_head``) into ``out_dir``."""
    from safetensors.torch import save_file

    from vidssl.io import atomic_write
    from vidssl.models import ENCODER_FILENAME, save_encoder

    state = read_bevt_checkpoint(pth_path)
    model = load_bevt_encoder(state, backbone, kwargs, pretrained_window)
    out_dir = Path(out_dir)
    written = {"encoder": save_encoder(model, out_dir / ENCODER_FILENAME, backbone, model.backbone_kwargs, bevt_contract())}
    _, decoders, head = split_bevt_state(state)
    if decoders or head:
        tensors = {**{f"decoders.{k}": v.contiguous() for k, v in decoders.items()},
                   **{f"lm_head.{k}": v.contiguous() for k, v in head.items()}}
        written["heads"] = atomic_write(out_dir / "bevt_heads.safetensors", lambda tmp: save_file(tensors, str(tmp)),
                                        what="BEVT heads")
    return written


__all__ = ["STAND_INS", "Stub", "bevt_contract", "convert_bevt_checkpoint", "inflate_2d_state", "is_2d_state",
           "init_from_bevt_checkpoint", "load_bevt_encoder", "read_bevt_checkpoint", "resize_bias_tables", "split_bevt_state"]
