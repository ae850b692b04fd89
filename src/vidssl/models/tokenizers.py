"""Visual tokenizers for BEVT's token targets: the DALL-E dVAE encoder and a VQ tokenizer vidssl trains.

Both map frames in [0, 1] (``B×C×T×H×W`` or ``B×C×H×W``) to token ids ``B×T×G×G`` with
:meth:`tokens` (``G`` = the prediction grid, 14 for 224² crops) and carry ``vocab_size``.

**DALL-E** (:class:`DalleEncoder`, reference §3.5): OpenAI's dVAE encoder (vocab 8192, 8× downsampling),
frozen. BEVT feeds it the crop resized to ``8·G`` = 112² with Lanczos and mapped to [0.1, 0.9]
(:func:`~vidssl.models.targets.map_pixels`); the target is ``argmax`` of its logits. The official
``encoder.pkl`` is a *pickled module*: ``torch.load`` on it imports the ``dall_e`` package and runs
whatever the file names. :func:`read_dalle_pickle` instead opens it with PyTorch's restricted
unpickler, where the module classes of the file (``dall_e.encoder.Encoder``, ``EncoderBlock``,
``dall_e.utils.Conv2d``, torch's ``Sequential``/``ReLU``/``MaxPool2d``/``Identity``) are rebuilt as inert
:class:`ModuleState` records of their attributes — nothing of the file runs and nothing is imported —
and the parameters are read out by their module path (``blocks.group_1.block_1.res_path.conv_1.w`` …).
:func:`convert_dalle_encoder` writes them once to a ``.safetensors`` file (with the architecture's sizes
in its metadata), which :func:`load_tokenizer` then reads. The architecture is re-implemented here from
the ``dall-e`` package's description (groups of residual blocks with a ``1/n_layers²`` gain on the
residual path, max-pooling between groups, 7×7 input conv, 1×1 output conv); it runs in float32 where
the package uses float16 convolutions on a GPU.

**VQ** (:class:`VQTokenizer`): a small VQ-VAE (conv encoder 8× down, a codebook, conv decoder) that
``vidssl tokenizer train`` fits on frames of the user's own videos (:func:`train_vq_tokenizer`), so
token targets exist without any download. Codebook: nearest code (squared L2), straight-through
gradients, codebook + 0.25·commitment losses (van den Oord et al., 2017), dead codes re-seeded from
the batch's encodings.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.errors import UserError
from vidssl.models.targets import lanczos_resize, map_pixels


def _frames(x: Tensor) -> tuple[Tensor, int, int]:
    if x.dim() == 4:
        return x, x.shape[0], 1
    if x.dim() != 5:
        raise ValueError(f"expected frames B×C×T×H×W or B×C×H×W, got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), b, t


# ============================================================================ DALL-E encoder


class DalleConv(nn.Module):
    """The ``dall_e.utils.Conv2d`` layer: parameters ``w`` (out×in×k×k) and ``b``, 'same' padding."""

    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / (n_in * kw * kw) ** 0.5)
        self.b = nn.Parameter(torch.zeros(n_out))
        self.padding = (kw - 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.w, self.b, padding=self.padding)


class DalleEncoderBlock(nn.Module):
    """``id_path(x) + res_path(x) / n_layers²``; ``res_path`` = 4 × (ReLU, conv 3-3-3-1) at ``n_out/4`` width."""

    def __init__(self, n_in: int, n_out: int, n_layers: int):
        super().__init__()
        hidden = n_out // 4
        self.post_gain = 1.0 / n_layers**2
        self.id_path = DalleConv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", DalleConv(n_in, hidden, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", DalleConv(hidden, hidden, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", DalleConv(hidden, hidden, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", DalleConv(hidden, n_out, 1))]))

    def forward(self, x: Tensor) -> Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DalleEncoder(nn.Module):
    """The DALL-E dVAE encoder (official sizes: 4 groups × 2 blocks, n_hid 256, vocab 8192), names as
    in ``encoder.pkl`` (``blocks.input``, ``blocks.group_{g}.block_{i}``, ``blocks.output.conv``).

    ``forward``: mapped pixels ``N×3×H×W`` → logits ``N×vocab×H/8×W/8``.
    """

    def __init__(self, group_count: int = 4, n_hid: int = 256, n_blk_per_group: int = 2, input_channels: int = 3,
                 vocab_size: int = 8192):
        super().__init__()
        self.config = {"group_count": group_count, "n_hid": n_hid, "n_blk_per_group": n_blk_per_group,
                       "input_channels": input_channels, "vocab_size": vocab_size}
        self.vocab_size = vocab_size
        n_layers = group_count * n_blk_per_group
        groups: list[tuple[str, nn.Module]] = [("input", DalleConv(input_channels, n_hid, 7))]
        width = n_hid
        for g in range(group_count):
            out = n_hid * 2 ** g
            blocks: list[tuple[str, nn.Module]] = []
            for i in range(n_blk_per_group):
                blocks.append((f"block_{i + 1}", DalleEncoderBlock(width if i == 0 else out, out, n_layers)))
            width = out
            if g < group_count - 1:
                blocks.append(("pool", nn.MaxPool2d(kernel_size=2)))
            groups.append((f"group_{g + 1}", nn.Sequential(OrderedDict(blocks))))
        groups.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", DalleConv(width, vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(groups))

    @property
    def downsampling(self) -> int:
        return 2 ** (self.config["group_count"] - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x.float())

    @torch.no_grad()
    def tokens(self, frames: Tensor, grid: int) -> Tensor:
        """[0, 1] frames → token ids ``B×T×G×G``: resize to ``8·G`` (OpenCV Lanczos-4, BEVT's ``CopyResize``),
        clamp to [0, 1], map to [0.1, 0.9], ``argmax`` of the logits."""
        flat, b, t = _frames(frames)
        side = grid * self.downsampling
        x = map_pixels(lanczos_resize(flat.float(), (side, side)).clamp(0, 1))
        ids = self(x).argmax(dim=1)
        return ids.view(b, t, grid, grid)


class ModuleState:
    """Inert stand-in for a pickled ``nn.Module``: keeps its attribute dict; runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {"state": state}


#: The classes an ``encoder.pkl`` names, read as :class:`ModuleState` (any other class is refused).
DALLE_PICKLE_CLASSES = ("dall_e.encoder.Encoder", "dall_e.encoder.EncoderBlock", "dall_e.utils.Conv2d",
                        "torch.nn.modules.container.Sequential", "torch.nn.modules.activation.ReLU",
                        "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.linear.Identity")
DALLE_SIZES = ("group_count", "n_hid", "n_blk_per_group", "input_channels", "vocab_size")


def _flatten_module(node: ModuleState, prefix: str, out: dict[str, Tensor]) -> None:
    for name, value in (node.state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value.detach().clone()
    for name, child in (node.state.get("_modules") or {}).items():
        if isinstance(child, ModuleState):
            _flatten_module(child, f"{prefix}{name}.", out)


def read_dalle_pickle(path: str | Path) -> tuple[dict[str, Tensor], dict[str, int]]:
    """The weights (by module path) and sizes of a DALL-E ``encoder.pkl``, read without running it.

    Raises :class:`UserError` if the file is missing, is not a pickled DALL-E encoder, or names any
    class outside :data:`DALLE_PICKLE_CLASSES` (and tensors / plain containers).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"DALL-E encoder file '{path}' does not exist (download encoder.pkl from "
                        "https://cdn.openai.com/dall-e/encoder.pkl, or use method.target=vq/pixels/hog)")
    try:
        with torch.serialization.safe_globals([(ModuleState, name) for name in DALLE_PICKLE_CLASSES]):
            root = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError) as exc:
        lines = str(exc).splitlines()
        detail = next((ln.strip() for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0] if lines else "")
        raise UserError(f"cannot read '{path}' safely as a DALL-E encoder (only the dall_e module classes, "
                        f"tensors and plain containers are accepted): {detail}") from None
    if not isinstance(root, ModuleState) or "blocks" not in (root.state.get("_modules") or {}):
        raise UserError(f"'{path}' is not a pickled DALL-E encoder (no Encoder module with 'blocks' inside)")
    sizes = {key: int(root.state[key]) for key in DALLE_SIZES if key in root.state}
    weights: dict[str, Tensor] = {}
    _flatten_module(root, "", weights)
    return weights, sizes


def convert_dalle_encoder(pkl_path: str | Path, out_path: str | Path) -> Path:
    """``encoder.pkl`` → ``.safetensors`` (weights + sizes in the metadata), checked by loading it."""
    weights, sizes = read_dalle_pickle(pkl_path)
    encoder = DalleEncoder(**sizes)
    _load_strict(encoder, weights, f"DALL-E encoder '{pkl_path}'")
    return save_dalle_encoder(encoder, out_path)


def save_dalle_encoder(encoder: DalleEncoder, out_path: str | Path) -> Path:
    """Write a :class:`DalleEncoder` as ``.safetensors`` with its sizes in the metadata."""
    from safetensors.torch import save_file

    from vidssl.io import atomic_write

    metadata = {"vidssl_tokenizer": "dalle", "config": json.dumps(encoder.config)}
    tensors = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    return atomic_write(Path(out_path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata), what="tokenizer")


def _load_strict(model: nn.Module, weights: dict[str, Tensor], what: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or wrong:
        raise UserError(f"{what} does not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                        f"wrong shapes {wrong[:5]}")
    model.load_state_dict(weights)


# ============================================================================ VQ tokenizer


class VQTokenizer(nn.Module):
    """A small VQ-VAE: conv encoder (3 stride-2 convs = 8× down) → nearest of ``vocab_size`` codes → decoder.

    ``forward(x)`` on [0, 1] frames ``N×3×H×W`` → dict with ``reconstruction``, ``ids`` ``N×H/8×W/8`` and
    the ``loss`` (reconstruction MSE + codebook + 0.25·commitment).
    """

    def __init__(self, vocab_size: int = 1024, hidden: int = 64, code_dim: int = 32, beta: float = 0.25):
        super().__init__()
        self.config = {"vocab_size": vocab_size, "hidden": hidden, "code_dim": code_dim, "beta": beta}
        self.vocab_size = vocab_size
        self.beta = beta
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, code_dim, 1))
        self.codebook = nn.Embedding(vocab_size, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / vocab_size, 1.0 / vocab_size)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(hidden, 3, 4, 2, 1))

    downsampling = 8

    def encode(self, x: Tensor) -> Tensor:
        """[0, 1] ``N×3×H×W`` → continuous codes ``N×H/8×W/8×code_dim``."""
        return self.encoder(x * 2 - 1).permute(0, 2, 3, 1)

    def quantise(self, z: Tensor) -> Tensor:
        """Nearest code id of every vector ``…×code_dim`` (squared L2)."""
        flat = z.reshape(-1, z.shape[-1])
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.t()
                     + self.codebook.weight.pow(2).sum(1).unsqueeze(0))
        return distances.argmin(dim=1).view(z.shape[:-1])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.encode(x)
        ids = self.quantise(z.detach())
        q = self.codebook(ids)
        codebook_loss = F.mse_loss(q, z.detach())
        commitment = F.mse_loss(z, q.detach())
        q_st = z + (q - z).detach()  # straight-through
        reconstruction = (self.decoder(q_st.permute(0, 3, 1, 2)) + 1) / 2
        recon_loss = F.mse_loss(reconstruction, x)
        return {"loss": recon_loss + codebook_loss + self.beta * commitment, "reconstruction_loss": recon_loss,
                "reconstruction": reconstruction, "ids": ids, "z": z}

    @torch.no_grad()
    def tokens(self, frames: Tensor, grid: int) -> Tensor:
        """[0, 1] frames → ids ``B×T×G×G`` (frames resized to ``8·G`` with OpenCV Lanczos-4, as for DALL-E)."""
        flat, b, t = _frames(frames)
        side = grid * self.downsampling
        x = lanczos_resize(flat.float(), (side, side)).clamp(0, 1) if flat.shape[-1] != side or flat.shape[-2] != side else flat.float()
        return self.quantise(self.encode(x)).view(b, t, grid, grid)

    @torch.no_grad()
    def restart_dead_codes(self, z: Tensor, usage: Tensor, generator: torch.Generator | None = None) -> int:
        """Re-seed codes never chosen (``usage == 0``) with random encodings of the batch; returns how many."""
        dead = (usage == 0).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = z.reshape(-1, z.shape[-1])
        pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=generator, device="cpu").to(flat.device)
        self.codebook.weight.data[dead] = flat[pick]
        return int(dead.numel())


def save_vq_tokenizer(model: VQTokenizer, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    from vidssl.io import atomic_write

    path = Path(path)
    metadata = {"vidssl_tokenizer": "vq", "config": json.dumps(model.config), "training": json.dumps(extra or {})}
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), what="tokenizer")


def load_tokenizer(path: str | Path, kind: str) -> nn.Module:
    """A frozen tokenizer from ``path``: ``kind="dalle"`` (``encoder.pkl``, read safely, or its converted
    ``.safetensors``) or ``"vq"`` (a file of ``vidssl tokenizer train``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"tokenizer file '{path}' does not exist")
    if kind == "dalle" and path.suffix != ".safetensors":
        weights, sizes = read_dalle_pickle(path)
        model: nn.Module = DalleEncoder(**sizes)
        _load_strict(model, weights, f"DALL-E encoder '{path}'")
        return model.eval()
    if path.suffix != ".safetensors":
        raise UserError(f"tokenizer '{path}': expected a .safetensors file (vidssl tokenizer train / convert-dalle)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    found = metadata.get("vidssl_tokenizer")
    if found != kind:
        raise UserError(f"tokenizer '{path}' is a '{found}' tokenizer, but method.target={kind} needs a '{kind}' one")
    config = json.loads(metadata["config"])
    model = DalleEncoder(**config) if kind == "dalle" else VQTokenizer(**config)
    _load_strict(model, load_file(str(path)), f"tokenizer '{path}'")
    return model.eval()


def train_vq_tokenizer(frames_iter, model: VQTokenizer, steps: int, lr: float = 3e-4, log=print,
                       restart_every: int = 50, seed: int = 0) -> list[float]:
    """Fit ``model`` on batches of [0, 1] frames ``N×3×S×S`` from ``frames_iter`` for ``steps`` Adam steps.

    Every ``restart_every`` steps, codes unused since the last restart are re-seeded. Returns the
    reconstruction losses per step.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    usage = torch.zeros(model.vocab_size, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    for step in range(steps):
        x = next(frames_iter)
        out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimiser.step()
        usage += torch.bincount(out["ids"].flatten().cpu(), minlength=model.vocab_size)
        losses.append(float(out["reconstruction_loss"].detach()))
        if restart_every and (step + 1) % restart_every == 0 and step + 1 < steps:
            restarted = model.restart_dead_codes(out["z"].detach(), usage, generator)
            usage.zero_()
            if restarted:
                log(f"step {step + 1}: re-seeded {restarted} unused codes")
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}: reconstruction mse {losses[-1]:.4f}")
    return losses
