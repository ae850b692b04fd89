"""Load BraVe's released checkpoints (``.npy`` haiku parameter dicts) into vidssl's TSM-ResNet.

The released files (``storage.googleapis.com/dm-jaxline/brave/*.npy``) are ``np.save`` of a
pickled dict ``{"params", "state", "config"}``; BraVe's own evaluator opens them with
``np.load(allow_pickle=True)``, which would run any code a tampered file carries. vidssl reads
them with a *restricted* unpickler that can only rebuild numpy arrays, dtypes, scalars and
plain/haiku mappings: anything else is refused with the name of the offending global.

Parameter names (haiku, ``prefix`` = ``narrow_video_embedding`` or ``broad_video_embedding``)::

    {prefix}/TSMResNetV2/tsm_resnet_stem                                  w [7,7,3,64w]
    {prefix}/TSMResNetV2/tsm_resnet_unit_{u}/block_{b}/shortcut_conv       w [1,1,Cin,Cout]  (b = 0)
    {prefix}/TSMResNetV2/tsm_resnet_unit_{u}/block_{b}/conv_{0,1,2}        w [k,k,Cin,Cout]
    {prefix}/TSMResNetV2/tsm_resnet_unit_{u}/block_{b}/batch_norm{,_1,_2}  scale, offset [1,1,1,C]
    {prefix}/TSMResNetV2/batch_norm                                        scale, offset  (final)
    state: <batch norm path>/~/mean_ema, /~/var_ema                       average [1,1,1,C]

Two details matter (reference A5), both handled by vidssl's TSM itself, so the conversion
is a renaming plus the kernel layout change (haiku HWIO -> torch OIHW):

* **Channel re-ordering of the temporal shift.** BraVe's shift outputs the channels as
  ``[x[t+1][C-n:], x[t][n:C-n], x[t-1][:n]]`` (n = C/8). vidssl's
  :func:`~vidssl.models.backbones.tsm.temporal_shift` produces the same layout, so every
  ``conv_0`` kernel is used as is (no input-channel permutation).
* **TF 'SAME' padding.** Haiku pads stride-2 convolutions and pools asymmetrically; the
  converted encoder is built with ``tf_same_padding=True`` so its outputs match BraVe's.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidssl.errors import UserError

# ----------------------------------------------------------------------------------------------
# Reading the .npy without executing arbitrary pickles
# ----------------------------------------------------------------------------------------------

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "array"): np.array,
    ("collections", "OrderedDict"): dict,
    # haiku's immutable mapping pickles as (FlatMapping, (dict,)); a dict is all we need
    ("haiku._src.data_structures", "FlatMapping"): dict,
    ("haiku._src.data_structures", "FlatMap"): dict,
}


def _numpy_global(module: str, name: str) -> Any:
    """numpy's own array/scalar rebuilders (``numpy.core`` before 2.0, ``numpy._core`` after)."""
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray
        return getattr(multiarray, name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and mappings only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        found = _numpy_global(module, name)
        if found is not None:
            return found
        raise pickle.UnpicklingError(
            f"refusing to load '{module}.{name}': a BraVe checkpoint holds only numpy arrays and dicts"
        )


def read_brave_npy(path: str | Path) -> dict[str, Any]:
    """Read a BraVe ``.npy`` checkpoint safely: ``{"params": {...}, "state": {...}, "config": {...}}``.

    Raises :class:`~vidssl.errors.UserError` when the file is missing, is not an ``.npy`` file,
    holds something other than such a dict, or would need code other than numpy to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"BraVe checkpoint '{path}' does not exist")
    from numpy.lib import format as npy_format

    with path.open("rb") as fh:
        try:
            version = npy_format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = npy_format.read_array_header_2_0(fh)
        except ValueError as exc:
            raise UserError(f"'{path}' is not a .npy file ({exc})") from None
        if not dtype.hasobject or shape != ():
            raise UserError(f"'{path}' holds a {dtype} array of shape {shape}, not BraVe's pickled checkpoint dict")
        try:
            obj = _RestrictedUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
            raise UserError(f"cannot read BraVe checkpoint '{path}': {exc}") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or "params" not in obj:
        raise UserError(f"'{path}' is not a BraVe checkpoint (expected a dict with 'params', 'state', 'config')")
    return obj


# ----------------------------------------------------------------------------------------------
# Parsing the haiku names into a network description
# ----------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"/tsm_resnet_unit_(\d+)/block_(\d+)/(shortcut_conv|conv_\d|batch_norm(?:_\d)?)$")


@dataclass
class HaikuBatchNorm:
    """One haiku BatchNorm: per-channel ``scale``, ``offset``, running ``mean`` and ``var`` (1-D)."""

    scale: np.ndarray
    offset: np.ndarray
    mean: np.ndarray
    var: np.ndarray


@dataclass
class HaikuBlock:
    """One TSM bottleneck block: convs as HWIO arrays, three pre-activation BNs."""

    conv_0: np.ndarray
    conv_1: np.ndarray
    conv_2: np.ndarray
    bn_0: HaikuBatchNorm  # preact BN (before the shortcut and the shift)
    bn_1: HaikuBatchNorm  # after conv_0
    bn_2: HaikuBatchNorm  # after conv_1
    shortcut: np.ndarray | None = None


@dataclass
class HaikuTSM:
    """A BraVe TSM-ResNetV2 read from a checkpoint."""

    stem: np.ndarray  # HWIO 7×7×3×64w
    units: list[list[HaikuBlock]]
    final_bn: HaikuBatchNorm

    @property
    def width_multiplier(self) -> float:
        """BraVe's ``tsm_resnet_width_multiplier`` (stem channels / 64): 1 or 2 for the released files."""
        return self.stem.shape[-1] / 64

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(len(u) for u in self.units)

    @property
    def in_channels(self) -> int:
        return int(self.stem.shape[2])


def _as_array(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise UserError(f"checkpoint entry '{where}' is a {type(value).__name__}, expected a numpy array")
    return value


def _bn(params: dict, state: dict, path: str) -> HaikuBatchNorm:
    p = params.get(path)
    if p is None:
        raise UserError(f"checkpoint has no batch norm '{path}'")
    stats = {}
    for kind in ("mean", "var"):
        entry = state.get(f"{path}/~/{kind}_ema", state.get(f"{path}/{kind}_ema"))
        if entry is None or "average" not in entry:
            raise UserError(f"checkpoint state has no '{path}/~/{kind}_ema' (BN moving {kind})")
        stats[kind] = _as_array(entry["average"], f"{path}/~/{kind}_ema/average").reshape(-1)
    return HaikuBatchNorm(
        scale=_as_array(p["scale"], f"{path}/scale").reshape(-1),
        offset=_as_array(p["offset"], f"{path}/offset").reshape(-1),
        mean=stats["mean"],
        var=stats["var"],
    )


def parse_tsm(checkpoint: dict[str, Any], prefix: str = "narrow_video_embedding") -> HaikuTSM:
    """Collect the TSM-ResNetV2 under ``prefix`` from a BraVe checkpoint dict."""
    params, state = checkpoint["params"], checkpoint.get("state", {})
    stems = [k for k in params if k.startswith(prefix + "/") and k.endswith("/tsm_resnet_stem")]
    if len(stems) != 1:
        found = sorted({k.split("/")[0] for k in params})
        raise UserError(f"checkpoint has no TSM network under '{prefix}' (top-level modules: {', '.join(found)})")
    root = stems[0][: -len("/tsm_resnet_stem")]
    blocks: dict[tuple[int, int], dict[str, str]] = {}
    for key in params:
        if not key.startswith(root + "/"):
            continue
        m = _BLOCK_RE.search(key[len(root) :])
        if m:
            blocks.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = key
    num_units = 1 + max((u for u, _ in blocks), default=-1)
    units: list[list[HaikuBlock]] = []
    for u in range(num_units):
        unit = []
        for b in range(1 + max(bb for uu, bb in blocks if uu == u)):
            names = blocks.get((u, b))
            where = f"{root}/tsm_resnet_unit_{u}/block_{b}"
            if names is None or not {"conv_0", "conv_1", "conv_2"} <= set(names):
                raise UserError(f"checkpoint block '{where}' is incomplete")
            unit.append(
                HaikuBlock(
                    conv_0=_as_array(params[names["conv_0"]]["w"], f"{where}/conv_0"),
                    conv_1=_as_array(params[names["conv_1"]]["w"], f"{where}/conv_1"),
                    conv_2=_as_array(params[names["conv_2"]]["w"], f"{where}/conv_2"),
                    bn_0=_bn(params, state, f"{where}/batch_norm"),
                    bn_1=_bn(params, state, f"{where}/batch_norm_1"),
                    bn_2=_bn(params, state, f"{where}/batch_norm_2"),
                    shortcut=_as_array(params[names["shortcut_conv"]]["w"], f"{where}/shortcut_conv")
                    if "shortcut_conv" in names
                    else None,
                )
            )
        units.append(unit)
    if not units:
        raise UserError(f"checkpoint network '{root}' has no residual units")
    return HaikuTSM(
        stem=_as_array(params[stems[0]]["w"], stems[0]), units=units, final_bn=_bn(params, state, f"{root}/batch_norm")
    )


def hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    """haiku conv kernel ``[kh, kw, in, out]`` -> torch ``[out, in, kh, kw]``."""
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


# ----------------------------------------------------------------------------------------------
# Into vidssl's TSMResNet
# ----------------------------------------------------------------------------------------------


def _bn_entries(name: str, bn: HaikuBatchNorm) -> dict[str, np.ndarray]:
    return {
        f"{name}.weight": bn.scale,
        f"{name}.bias": bn.offset,
        f"{name}.running_mean": bn.mean,
        f"{name}.running_var": bn.var,
    }


def tsm_state_dict(net: HaikuTSM) -> dict[str, np.ndarray]:
    """vidssl ``TSMResNet`` state-dict entries (numpy) for a parsed BraVe TSM.

    vidssl's TSM uses haiku's module names, so ``tsm_resnet_unit_0/block_0/batch_norm_1`` becomes
    ``tsm_resnet_unit_0.block_0.batch_norm_1``; kernels go from HWIO to OIHW.
    """
    out = {"tsm_resnet_stem.weight": hwio_to_oihw(net.stem)}
    for u, unit in enumerate(net.units):
        for b, block in enumerate(unit):
            name = f"tsm_resnet_unit_{u}.block_{b}"
            for i, conv in enumerate((block.conv_0, block.conv_1, block.conv_2)):
                out[f"{name}.conv_{i}.weight"] = hwio_to_oihw(conv)
            if block.shortcut is not None:
                out[f"{name}.shortcut_conv.weight"] = hwio_to_oihw(block.shortcut)
            for suffix, bn in (("", block.bn_0), ("_1", block.bn_1), ("_2", block.bn_2)):
                out.update(_bn_entries(f"{name}.batch_norm{suffix}", bn))
    out.update(_bn_entries("batch_norm", net.final_bn))
    return out


def encoder_spec(net: HaikuTSM) -> tuple[str, dict[str, Any]]:
    """The vidssl backbone (name, kwargs) that has the checkpoint's structure, Haiku padding on."""
    kwargs: dict[str, Any] = {"tf_same_padding": True}
    width = net.width_multiplier
    if width != 1:
        kwargs["width_mult"] = width if not float(width).is_integer() else int(width)
    if net.blocks != (3, 4, 6, 3):
        kwargs["blocks"] = list(net.blocks)
    if net.in_channels != 3:
        kwargs["in_channels"] = net.in_channels
    return "tsm_resnet50", kwargs


def load_brave_tsm(checkpoint: str | Path | dict[str, Any], view: str = "narrow"):
    """Build vidssl's TSM-ResNet holding the ``view`` ("narrow" or "broad") video backbone of a BraVe
    checkpoint (a path to the released ``.npy`` or an already read dict).

    Returns ``(model, name, kwargs)``; ``model`` is in eval mode. Raises ``UserError`` when the
    checkpoint does not match the network (missing, extra or mis-shaped tensors are all named).
    """
    import torch

    from vidssl.models.backbones import build_backbone

    if view not in ("narrow", "broad"):
        raise UserError(f"view must be 'narrow' or 'broad', got '{view}'")
    data = checkpoint if isinstance(checkpoint, dict) else read_brave_npy(checkpoint)
    net = parse_tsm(data, prefix=f"{view}_video_embedding")
    name, kwargs = encoder_spec(net)
    model = build_backbone(name, **kwargs)
    converted = tsm_state_dict(net)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in converted and not k.endswith("num_batches_tracked"))
    extra = sorted(k for k in converted if k not in own)
    if missing or extra:
        raise UserError(
            f"BraVe checkpoint does not match {name}({kwargs}): missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for key, value in converted.items():
        if tuple(own[key].shape) != value.shape:
            raise UserError(f"BraVe checkpoint tensor '{key}' has shape {value.shape}, expected {tuple(own[key].shape)}")
        own[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    model.load_state_dict(own)
    return model.eval(), name, kwargs


def convert_brave_checkpoint(npy_path: str | Path, out_path: str | Path, view: str = "narrow") -> Path:
    """Convert a released BraVe ``.npy`` checkpoint into a vidssl ``encoder.safetensors``.

    The narrow video backbone is what BraVe evaluates (and what ``vidssl eval svm`` then loads);
    ``view="broad"`` exports the broad video backbone of V/V-style checkpoints instead.
    ``out_path`` may be a directory (``encoder.safetensors`` is written inside it).

    Example::

        convert_brave_checkpoint("29466668_1_0.npy", "runs/brave_va_official")
        # then: vidssl eval svm --encoder runs/brave_va_official ...
    """
    from vidssl.models import save_encoder

    model, name, kwargs = load_brave_tsm(npy_path, view=view)
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        out_path = out_path / "encoder.safetensors"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(model, out_path, name=name, kwargs=kwargs)
    return out_path
