"""Load GDT's released checkpoints (``gdt_K400.pth``, ``gdt_HT100M.pth``, ``gdt_IG65M.pth``) into vidssl encoders.

The files (``dl.fbaipublicfiles.com/GDT/*.pth``) are ``torch.save`` of a dict holding the model's
``state_dict`` under ``"model"`` (or ``"state_dict"``), the epoch, and possibly the optimiser, the lr
scheduler and the run's ``argparse.Namespace``. GDT's evaluator opens them with a plain
``torch.load``, which runs whatever code a tampered file carries. vidssl reads them with PyTorch's
*restricted* unpickler (``weights_only=True``): only tensors and plain containers are rebuilt. The few
metadata classes a GDT checkpoint may hold (the argument namespace, GDT's warm-up scheduler, torch's
``MultiStepLR`` and ``SGD``) are rebuilt as inert stand-ins that only keep their attribute dict; any
other class is refused with its name.

Key names (GDT ``model.py``; ``module.`` prefixes from DDP are stripped)::

    video_network.base.{stem,layer1..4}.*      R(2+1)D-18 (= torchvision / vidssl r2plus1d18_tv)
    audio_network.base.{conv1,bn1,layer1..4}.* ResNet-9 on [B, 1, 40 freq, 99 time] (AV models)
    audio_network.base.fc.*                    unused classifier of the ResNet (dropped)
    text_network.{word_embd,fc1}.*             word2vec table + Linear(300, 2048) (HT100M model)
    mlp_v.*, mlp_a.*, mlp_t.*                  projection heads (not part of an encoder)

The video backbone loads as it is. The audio network is vidssl's ``audio_resnet9`` with every 2-D
kernel transposed: GDT feeds spectrograms as (freq, time), vidssl as (time, freq), and a ResNet with
symmetric strides, paddings and pools computes the same function on the transposed input with
transposed kernels.

Input contracts of the converted video encoder (how GDT fed it): 30 frames at 30 fps, 112² crops,
mean/std 0.45/0.225 for the audio-visual models (K400, IG65M); the HT100M model was fed pixels in
[0, 1] without normalisation (B8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidssl.errors import UserError
from vidssl.models.contract import InputContract
from vidssl.models.safe_checkpoint import Stub, load_checkpoint_safely, load_matching, strip_module_prefix

VIDEO_PREFIX = "video_network.base."
AUDIO_PREFIX = "audio_network.base."
TEXT_PREFIX = "text_network."


#: Metadata classes a GDT checkpoint may hold, read as :class:`Stub` (nothing else is accepted).
STAND_INS = ("argparse.Namespace", "src.scheduler.GradualWarmupScheduler", "torch.optim.lr_scheduler.MultiStepLR",
             "torch.optim.sgd.SGD")


def read_gdt_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a GDT ``.pth`` safely and return ``{"state_dict": {name: tensor}, "epoch", "args": dict}``.

    ``args`` is the run's argument namespace as a dict when the file has one (e.g. its
    ``hypothesis``), else ``{}``. Raises :class:`UserError` when the file is missing, is not a
    checkpoint, or holds a class other than tensors, containers and :data:`STAND_INS`.
    """
    data = load_checkpoint_safely(path, "GDT", STAND_INS)
    if isinstance(data, dict) and not any(k in data for k in ("model", "state_dict")) and all(
            isinstance(v, torch.Tensor) for v in data.values()):
        data = {"model": data}  # a bare state dict
    if not isinstance(data, dict) or not any(k in data for k in ("model", "state_dict")):
        raise UserError(f"'{path}' is not a GDT checkpoint (expected a dict with 'model' or 'state_dict')")
    state = data.get("state_dict", data.get("model"))
    if not isinstance(state, dict):
        raise UserError(f"'{path}': the checkpoint's weights are a {type(state).__name__}, not a state dict")
    state = strip_module_prefix(state)
    args = data.get("args")
    return {"state_dict": state, "epoch": data.get("epoch"), "args": args.state if isinstance(args, Stub) else {}}


def _strip(state: dict[str, torch.Tensor], prefix: str, drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k[len(prefix):].startswith(drop)}


def video_contract(normalised: bool = True) -> InputContract:
    """How GDT fed its video network (B2-B3, B8): 30 frames at 30 fps, 112² crops of a 128 short side."""
    mean, std = ((0.45,) * 3, (0.225,) * 3) if normalised else ((0.0,) * 3, (1.0,) * 3)
    return InputContract(modality="video", mean=mean, std=std, num_frames=30, fps=30.0, crop_size=112, canvas=128,
                         eval_views="gdt")


def load_gdt_video(checkpoint: str | Path | dict[str, Any]) -> torch.nn.Module:
    """The R(2+1)D-18 of a GDT checkpoint as vidssl's ``r2plus1d18_tv`` (eval mode, with its input contract)."""
    from vidssl.models import build_random_encoder

    data = checkpoint if isinstance(checkpoint, dict) else read_gdt_checkpoint(checkpoint)
    weights = _strip(data["state_dict"], VIDEO_PREFIX, drop=("fc.",))
    if not weights:
        raise UserError("the checkpoint has no video network (no 'video_network.base.*' weights)")
    model = load_matching(build_random_encoder("r2plus1d18_tv"), weights, "GDT video network", "vidssl's r2plus1d18_tv")
    model.input_contract = video_contract(normalised=not any(k.startswith(TEXT_PREFIX) for k in data["state_dict"]))
    return model


def load_gdt_audio(checkpoint: str | Path | dict[str, Any]) -> torch.nn.Module:
    """The audio ResNet-9 of an audio-visual GDT checkpoint as vidssl's ``audio_resnet9`` (kernels
    transposed for vidssl's time×freq spectrograms; eval mode)."""
    from vidssl.models import build_random_encoder

    data = checkpoint if isinstance(checkpoint, dict) else read_gdt_checkpoint(checkpoint)
    weights = _strip(data["state_dict"], AUDIO_PREFIX, drop=("fc.",))
    if not weights:
        raise UserError("the checkpoint has no audio network (a video-text model?)")
    weights = {k: (v.transpose(-1, -2).contiguous() if v.dim() == 4 else v) for k, v in weights.items()}
    model = load_matching(build_random_encoder("audio_resnet9"), weights, "GDT audio network", "vidssl's audio_resnet9")
    model.input_contract = InputContract(modality="audio", num_frames=99, crop_size=40, canvas=40)
    return model


def convert_gdt_checkpoint(pth_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Convert a released GDT checkpoint into vidssl encoder files in ``out_dir``.

    Writes ``encoder.safetensors`` (the video R(2+1)D-18, what GDT's fine-tuning protocol evaluates;
    ``vidssl eval finetune --checkpoint OUT_DIR --preset gdt``) and, for audio-visual models,
    ``audio_encoder.safetensors``. Returns the paths written, by name.

    Example::

        convert_gdt_checkpoint("gdt_K400.pth", "runs/gdt_k400_official")
    """
    from vidssl.models import ENCODER_FILENAME, save_encoder

    data = read_gdt_checkpoint(pth_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = load_gdt_video(data)
    written = {"video": save_encoder(video, out_dir / ENCODER_FILENAME, "r2plus1d18_tv", {}, video.input_contract)}
    if any(k.startswith(AUDIO_PREFIX) for k in data["state_dict"]):
        audio = load_gdt_audio(data)
        written["audio"] = save_encoder(audio, out_dir / "audio_encoder.safetensors", "audio_resnet9", {},
                                        audio.input_contract)
    return written


__all__ = ["STAND_INS", "Stub", "convert_gdt_checkpoint", "load_gdt_audio", "load_gdt_video", "read_gdt_checkpoint",
           "video_contract"]
