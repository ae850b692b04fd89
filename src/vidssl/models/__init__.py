"""Models: the backbone registry and the encoder file format.

An *encoder file* is a safetensors file holding a backbone's ``state_dict`` with metadata
``{"backbone": name, "kwargs": json.dumps(kwargs), "input_contract": json, "format": "vidssl-encoder/1"}``,
enough to rebuild the module with :func:`vidssl.models.backbones.build_backbone`, load it without
executing any pickled code, and feed it the way it was trained
(:class:`~vidssl.models.contract.InputContract`, attribute ``input_contract`` of the loaded
module; None for files written without one). A pretraining run writes it as
``DIR/encoder.safetensors``.

Example::

    save_encoder(model, "run/encoder.safetensors", name="r3d18_fgkv_tiny", kwargs={})
    encoder = load_encoder("run")                      # or the file, or run/checkpoints/last.ckpt
    baseline = build_random_encoder("r3d18_fgkv_tiny")  # the random-init baseline
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vidssl.errors import TrainingDiverged, UserError
from vidssl.models.backbones import BACKBONES, build_backbone
from vidssl.models.contract import InputContract

ENCODER_FILENAME = "encoder.safetensors"
ENCODER_FORMAT = "vidssl-encoder/1"
CKPT_ENCODER_PREFIX = "encoder."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def first_nonfinite(state: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state`` (nested mappings allowed) holding a NaN
    or an infinity; None when every one is finite."""
    for key, value in state.items():
        if isinstance(value, Mapping):
            inner = first_nonfinite(value)
            if inner is not None:
                return f"{key}.{inner}"
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(key)
    return None


def _tag(module: nn.Module, name: str, kwargs: dict[str, Any], contract: InputContract | None = None) -> nn.Module:
    """Remember how the module was built (eval reports print ``backbone_name``) and how it is fed."""
    module.backbone_name = name
    module.backbone_kwargs = dict(kwargs)
    module.input_contract = contract
    return module


def build_random_encoder(name: str, **kwargs: Any) -> nn.Module:
    """A randomly initialised backbone ``name`` (the baseline every protocol compares against).

    Seed the global RNG (or wrap in ``torch.random.fork_rng``) before calling for a reproducible draw.
    """
    return _tag(build_backbone(name, **kwargs), name, kwargs)


def save_encoder(module: nn.Module, path: str | Path, name: str, kwargs: dict[str, Any] | None = None,
                 contract: InputContract | None = None) -> Path:
    """Write ``module``'s weights (parameters and buffers) to the safetensors file ``path``, atomically.

    ``name`` / ``kwargs`` are the backbone registry name and builder arguments (JSON-serialisable)
    that rebuild ``module``; ``contract`` says how it must be fed (stored as metadata). Returns
    the path written.
    """
    kwargs = dict(kwargs or {})
    if name not in BACKBONES:
        raise UserError(f"save_encoder: '{name}' is not a registered backbone")
    try:
        kwargs_json = json.dumps(kwargs, sort_keys=True)
    except TypeError as err:
        raise UserError(f"save_encoder: backbone kwargs must be JSON-serialisable ({err})") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Clone so that tensors sharing storage (tied weights, views) can be written; safetensors refuses aliases.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    bad = first_nonfinite(tensors)
    if bad is not None:  # an encoder of a diverged run is never exported
        raise TrainingDiverged(f"refusing to write {path}: weight '{bad}' is not finite (the run diverged)")
    metadata = {"backbone": name, "kwargs": kwargs_json, "format": ENCODER_FORMAT}
    if contract is not None:
        metadata["input_contract"] = contract.to_json()
    from vidssl.io import atomic_write

    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata),
                 sum(t.element_size() * t.numel() for t in tensors.values()), "the encoder")
    # the same permissions as every other output (safetensors creates its file 0600)
    os.chmod(path, 0o666 & ~_umask())
    return path


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"'{source}' does not match backbone '{module.backbone_name}': "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def _load_safetensors(path: Path) -> nn.Module:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"'{path}' is not a readable safetensors file ({err})") from None
    if "backbone" not in metadata:
        raise UserError(f"'{path}' has no 'backbone' metadata; it was not written by vidssl.models.save_encoder")
    kwargs = json.loads(metadata.get("kwargs") or "{}")
    module = build_random_encoder(metadata["backbone"], **kwargs)
    if metadata.get("input_contract"):
        module.input_contract = InputContract.from_json(metadata["input_contract"])
    _load_state(module, state, path)
    return module


def _load_lightning_ckpt(path: Path) -> nn.Module:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise UserError(f"cannot read checkpoint '{path}' safely (weights_only=True): {err}") from None
    spec = (ckpt.get("hyper_parameters") or {}).get("encoder") if isinstance(ckpt, dict) else None
    if not spec or "name" not in spec:
        raise UserError(
            f"'{path}' has no hyper_parameters['encoder'] = {{'name', 'kwargs'}}; not a vidssl pretrain checkpoint"
        )
    state = {
        k[len(CKPT_ENCODER_PREFIX) :]: v
        for k, v in ckpt.get("state_dict", {}).items()
        if k.startswith(CKPT_ENCODER_PREFIX)
    }
    if not state:
        raise UserError(f"'{path}' holds no '{CKPT_ENCODER_PREFIX}*' weights")
    module = build_random_encoder(spec["name"], **dict(spec.get("kwargs") or {}))
    if spec.get("contract"):
        module.input_contract = InputContract.from_dict(dict(spec["contract"]))
    _load_state(module, state, path)
    return module


def load_encoder(path: str | Path) -> nn.Module:
    """Rebuild a saved encoder, in eval mode, from a run directory, an encoder ``.safetensors`` or a ``.ckpt``.

    - directory: loads ``DIR/encoder.safetensors``;
    - ``*.safetensors``: a file written by :func:`save_encoder`;
    - ``*.ckpt``: a Lightning checkpoint of a vidssl method, read with ``weights_only=True``; the
      backbone comes from ``hyper_parameters["encoder"]`` and the weights from the ``encoder.*`` keys.

    The module gets attributes ``backbone_name``, ``backbone_kwargs`` and ``input_contract``
    (an :class:`~vidssl.models.contract.InputContract`, None when the file has none). Missing or unreadable
    files raise :class:`~vidssl.errors.UserError` naming the path.
    """
    path = Path(path)
    if path.is_dir():
        candidate = path / ENCODER_FILENAME
        if not candidate.is_file():
            raise UserError(f"'{path}' has no {ENCODER_FILENAME} (is it a `vidssl pretrain` run directory?)")
        path = candidate
    if not path.exists():
        raise UserError(f"encoder file '{path}' does not exist")
    loaders = {".safetensors": _load_safetensors, ".ckpt": _load_lightning_ckpt}
    if path.suffix not in loaders:
        raise UserError(f"'{path}': expected a run directory, a .safetensors or a .ckpt file")
    return loaders[path.suffix](path).eval()


__all__ = ["BACKBONES", "InputContract", "build_backbone", "build_random_encoder", "first_nonfinite", "load_encoder",
           "save_encoder"]
