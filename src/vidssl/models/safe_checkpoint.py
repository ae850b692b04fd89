"""Reading other projects' PyTorch checkpoints without running their pickled code.

``torch.load(weights_only=True)`` accepts tensors and plain containers only; the metadata classes a
project pickles next to its weights (an ``argparse.Namespace``, an mmcv ``Config``, a scheduler)
are read as inert :class:`Stub` objects when the caller names them, and any other class is
refused. Used by the GDT, BaSSL and BEVT converters.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

import torch

from vidssl.errors import UserError

__all__ = ["Stub", "load_checkpoint_safely", "load_matching", "strip_module_prefix"]


class Stub:
    """Inert stand-in for a pickled metadata object: keeps its state (a dict) and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {"state": state}

    def __repr__(self) -> str:
        return f"Stub({sorted(self.state)})"


def load_checkpoint_safely(path: str | Path, what: str, stand_ins: Sequence[str] = ()) -> Any:
    """The unpickled content of ``path`` (tensors, containers, and :class:`Stub` for ``stand_ins``).

    Args:
        path: the checkpoint file.
        what: the project's name for messages ("GDT", "BaSSL", …).
        stand_ins: fully qualified class names read as :class:`Stub` (e.g. ``"argparse.Namespace"``).
    Raises:
        UserError: the file is missing, or holds anything else (nothing of it was executed).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} checkpoint '{path}' does not exist")
    try:
        with torch.serialization.safe_globals([(Stub, name) for name in stand_ins]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError) as exc:
        lines = str(exc).splitlines()
        detail = next((line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line),
                      lines[0] if lines else "")
        raise UserError(f"cannot read {what} checkpoint '{path}' safely (tensors and plain containers only): "
                        f"{detail}") from None


def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """``module.x`` -> ``x`` (DataParallel/DDP wrappers' prefix); other keys unchanged."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_matching(model: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, target: str,
                  optional: Sequence[str] = ()) -> torch.nn.Module:
    """Load ``weights`` into ``model`` only if every name and shape matches; returns ``model.eval()``.

    A missing or unexpected name, or a tensor of another shape, is a :class:`UserError` naming it
    (never a partial load). BatchNorm's ``num_batches_tracked`` and the names in ``optional`` may be
    absent (the model keeps its own). Values are cast to the model's dtypes.
    """
    own = model.state_dict()
    missing = sorted(k for k in own if k not in weights and not k.endswith("num_batches_tracked") and k not in optional)
    unexpected = sorted(k for k in weights if k not in own)
    if missing or unexpected:
        raise UserError(f"{what} does not match {target}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in weights.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise UserError(f"{what} tensor '{key}' has shape {tuple(value.shape)}, {target} expects {tuple(own[key].shape)}")
        own[key] = value.to(own[key].dtype)
    model.load_state_dict(own)
    return model.eval()
