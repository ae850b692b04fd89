"""Load BaSSL's released pretraining checkpoints (``bassl/pretrain/ckpt/<name>/model-v1.ckpt``, the README's
model zoo: BaSSL 10/40 epochs, SimCLR instance / temporal / NN) into vidssl.

The files are PyTorch-Lightning 1.3 checkpoints (``torch.save`` of a dict: ``state_dict``, ``epoch``,
``global_step``, optimizer and scheduler states, callback states). BaSSL opens them with a plain
``torch.load``, which runs whatever code a tampered file carries; vidssl uses PyTorch's restricted
unpickler (``weights_only=True``): tensors and plain containers only, plus a few metadata classes read
as inert stand-ins (:data:`STAND_INS`); any other class is refused with its name.

Key names (``pretrain_wrapper.PretrainingWrapper``; ``module.`` prefixes stripped)::

    shot_encoder.{conv1,bn1,layer1..4}.*                   torchvision ResNet-50 without fc (= image_resnet50)
    crn.shot_embedding.shot_embedding.*                    Linear(2048, 768)         -> shot_projection
    crn.shot_embedding.position_embedding.weight           Embedding(18, 768)        -> position_embedding
    crn.shot_embedding.mask_embedding.weight               Embedding(2, 2048), row 1 -> mask_embedding
    crn.shot_embedding.LayerNorm.*                                                   -> norm
    crn.encoder.layer.N.attention.self.{query,key,value}.*                           -> layers.N.{query,key,value}
    crn.encoder.layer.N.attention.output.{dense,LayerNorm}.*                         -> layers.N.attention_{out,norm}
    crn.encoder.layer.N.intermediate.dense.*                                         -> layers.N.intermediate
    crn.encoder.layer.N.output.{dense,LayerNorm}.*                                   -> layers.N.output{,_norm}
    crn.attention_mask, crn.shot_embedding.pos_ids         buffers (dropped: all-ones mask, 0..17)
    loss.head_nce.model.{0,2}.*, loss.head_{msm,pp,cgm}.*  pretext heads (not needed downstream; dropped)

The shot-level baselines' checkpoints have no ``crn.*`` (their CRN is trained from scratch when fine-tuning).
The number of attention heads is not stored in the weights; BaSSL used 8 (``num_heads``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vidssl.errors import UserError
from vidssl.models.contract import InputContract
from vidssl.models.safe_checkpoint import load_checkpoint_safely, strip_module_prefix

__all__ = ["STAND_INS", "read_bassl_checkpoint", "crn_state_from_official", "official_crn_state",
           "convert_bassl_checkpoint", "BASSL_CONTRACT"]

#: Metadata classes a Lightning 1.3 / Hydra checkpoint may hold, read as inert stand-ins.
STAND_INS = ("argparse.Namespace", "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
             "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata", "misc.attr_dict.AttrDict",
             "pathlib.PosixPath")

#: How BaSSL fed its shot encoder (§1.6): ImageNet normalisation, 224 crops of a 256 short side.
BASSL_CONTRACT = InputContract(modality="image", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_frames=1,
                               crop_size=224, canvas=256, eval_views="scenes")

_LAYER_MAP = {
    "attention.self.query.": "query.", "attention.self.key.": "key.", "attention.self.value.": "value.",
    "attention.output.dense.": "attention_out.", "attention.output.LayerNorm.": "attention_norm.",
    "intermediate.dense.": "intermediate.", "output.dense.": "output.", "output.LayerNorm.": "output_norm.",
}


def read_bassl_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a BaSSL checkpoint, read safely (see the module docstring)."""
    data = load_checkpoint_safely(path, "BaSSL", STAND_INS)
    state = data.get("state_dict") if isinstance(data, dict) else None
    if state is None and isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        state = data  # a bare state dict
    if not isinstance(state, dict):
        raise UserError(f"'{path}' is not a BaSSL checkpoint (expected a Lightning checkpoint with a 'state_dict')")
    state = strip_module_prefix(state)
    if not any(k.startswith("shot_encoder.") for k in state):
        raise UserError(f"'{path}' has no shot encoder weights ('shot_encoder.*'); is it a BaSSL pretraining checkpoint?")
    return state


def crn_state_from_official(state: dict[str, torch.Tensor], num_heads: int = 8) -> tuple[dict[str, torch.Tensor], dict]:
    """vidssl's CRN state and constructor kwargs (without ``input_dim``) from official ``crn.*`` weights."""
    crn = {k[len("crn."):]: v for k, v in state.items() if k.startswith("crn.")}
    out: dict[str, torch.Tensor] = {}
    for key, value in crn.items():
        if key in ("attention_mask", "shot_embedding.pos_ids"):
            continue
        if key == "shot_embedding.mask_embedding.weight":
            out["mask_embedding"] = value[1].clone()
            continue
        simple = {"shot_embedding.shot_embedding.": "shot_projection.",
                  "shot_embedding.position_embedding.": "position_embedding.",
                  "shot_embedding.LayerNorm.": "norm."}
        prefix = next((p for p in simple if key.startswith(p)), None)
        if prefix is not None:
            out[simple[prefix] + key[len(prefix):]] = value
            continue
        match = re.match(r"encoder\.layer\.(\d+)\.(.*)$", key)
        part = next((p for p in _LAYER_MAP if match and match.group(2).startswith(p)), None)
        if match is None or part is None:
            raise UserError(f"unexpected CRN weight 'crn.{key}' in the BaSSL checkpoint")
        out[f"layers.{match.group(1)}.{_LAYER_MAP[part]}{match.group(2)[len(part):]}"] = value
    layers = len({k.split(".")[1] for k in out if k.startswith("layers.")})
    kwargs = {"hidden_dim": int(out["shot_projection.weight"].shape[0]), "num_layers": layers, "num_heads": num_heads,
              "intermediate_dim": int(out["layers.0.intermediate.weight"].shape[0]),
              "num_shots": int(out["position_embedding.weight"].shape[0]) - 1, "dropout": 0.1}
    return out, kwargs


def official_crn_state(crn_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`crn_state_from_official` (official key names, ``crn.`` prefixed): for tests and export."""
    inverse = {v: k for k, v in _LAYER_MAP.items()}
    out = {}
    for key, value in crn_state.items():
        if key == "mask_embedding":
            out["crn.shot_embedding.mask_embedding.weight"] = torch.stack([torch.zeros_like(value), value])
        elif key.startswith("shot_projection."):
            out["crn.shot_embedding.shot_embedding." + key.split(".", 1)[1]] = value
        elif key.startswith("position_embedding."):
            out["crn.shot_embedding.position_embedding." + key.split(".", 1)[1]] = value
        elif key.startswith("norm."):
            out["crn.shot_embedding.LayerNorm." + key.split(".", 1)[1]] = value
        else:
            _, index, name, param = key.split(".")
            out[f"crn.encoder.layer.{index}.{inverse[name + '.']}{param}"] = value
    return out


def convert_bassl_checkpoint(ckpt_path: str | Path, out_dir: str | Path, num_heads: int = 8) -> dict[str, Path]:
    """Convert a released BaSSL checkpoint into ``out_dir/encoder.safetensors`` (the ResNet-50 shot encoder,
    with BaSSL's input contract) and, when it has one, ``out_dir/crn.safetensors`` (the CRN, with its shape
    in the metadata). ``vidssl eval scenes --checkpoint OUT_DIR`` then fine-tunes from both.

    Example::

        convert_bassl_checkpoint("bassl/pretrain/ckpt/bassl/model-v1.ckpt", "runs/bassl_official")
    """
    import json

    from safetensors.torch import save_file

    from vidssl.models import ENCODER_FILENAME, build_random_encoder, save_encoder
    from vidssl.models.crn import ContextualRelationNetwork

    state = read_bassl_checkpoint(ckpt_path)
    encoder = build_random_encoder("image_resnet50")
    weights = {k[len("shot_encoder."):]: v for k, v in state.items() if k.startswith("shot_encoder.")
               and not k.startswith("shot_encoder.fc.")}
    own = encoder.state_dict()
    missing = sorted(k for k in own if k not in weights and not k.endswith("num_batches_tracked"))
    extra = sorted(k for k in weights if k not in own)
    if missing or extra:
        raise UserError(f"BaSSL shot encoder does not match image_resnet50: missing {missing[:5]}, unexpected {extra[:5]}")
    encoder.load_state_dict({**own, **weights})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"encoder": save_encoder(encoder, out_dir / ENCODER_FILENAME, "image_resnet50", {}, BASSL_CONTRACT)}
    if any(k.startswith("crn.") for k in state):
        crn_state, kwargs = crn_state_from_official(state, num_heads)
        crn = ContextualRelationNetwork(int(crn_state["shot_projection.weight"].shape[1]), **kwargs)
        crn.load_state_dict(crn_state)  # strict: every weight has its place
        path = out_dir / "crn.safetensors"
        save_file({k: v.contiguous() for k, v in crn.state_dict().items()}, str(path),
                  metadata={"crn_kwargs": json.dumps(kwargs), "source": str(ckpt_path)})
        written["crn"] = path
    return written

