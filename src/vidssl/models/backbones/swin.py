"""Video Swin Transformers (Liu et al.) from torchvision's ``SwinTransformer3d``, as backbones.

``VideoSwin`` subclasses torchvision's ``SwinTransformer3d`` (weights=None; nothing is ever
downloaded) and only changes what a backbone needs: no classifier, ``forward(x,
return_features)`` returning the pooled embedding ``B×C`` (mean of the final LayerNorm'd tokens)
and the token map ``B×C×T/2/…×H/32×W/32``, an optional learnable mask token, and
:meth:`VideoSwin.forward_stages` for the per-stage outputs. Parameter names are torchvision's
(minus ``head``), so torchvision's Kinetics checkpoints load with ``strict=False``.

Registry names (torchvision's configurations; patch (2, 4, 4), window (8, 7, 7), MLP ratio 4):

- ``swin3d_t``: embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24) → 768-d, 27.85 M parameters;
- ``swin3d_s``: embed 96, depths (2, 2, 18, 2), heads (3, 6, 12, 24) → 768-d, 49.51 M;
- ``swin3d_b``: embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32) → 1024-d, 87.64 M. This is
  BEVT's video backbone (§3.3 of the reference): same sizes, patch norm, relative position bias
  table (2·8-1)(2·7-1)(2·7-1) per head, shifted windows with the shift zeroed on axes no bigger
  than the window. BEVT uses drop path 0.3: pass ``stochastic_depth_prob=0.3`` (torchvision's
  default is 0.1).
- ``swin3d_tiny``: embed 16, depths (1, 1, 2, 1), heads (1, 2, 2, 4), window (2, 4, 4) for CPU tests.
- ``swin_bevt_b`` / ``swin_bevt_tiny``: :class:`SwinBEVT` (below), BEVT's Swin with a 2-D image path
  sharing every parameter but the patch embedding; Swin-B sizes / embed 32, depths (1, 1, 2, 1),
  heads (1, 2, 4, 8), window (2, 4, 4).

What BEVT needs that torchvision's model lacks, and where it stands here:

- **Masked-token input**: BEVT replaces masked patch tokens by a learned ``mask_token``
  (``x·(1-m) + mask_token·m``) right after the patch embedding. Supported: build with
  ``mask_token=True`` and pass ``mask`` (``B×T'×H'×W'`` at the patch-token grid; BEVT's 14×14
  mask units are nearest-upsampled ×4 to that grid by the caller).
- **Intermediate outputs** for its FPN-style decoder (stage-3 output x3 before patch merging,
  and x4): :meth:`VideoSwin.forward_stages` returns every stage's pre-merging tokens.
- The 2-D image path and SDPA attention are in :class:`SwinBEVT` below (``swin_bevt_b``,
  ``swin_bevt_tiny``): a Swin written here rather than on torchvision's, because torchvision's
  attention is not SDPA, has no image path sharing the 3-D table, and its parameter names are not
  the official Video Swin ones that BEVT checkpoints carry. The decoders (``fpn``, ``fpn_s``,
  ``fpn_t``, ``lm_down(_st)``, ``lm_head``) are in :mod:`vidssl.methods.bevt`; inflation of 2-D
  checkpoints and the BEVT checkpoint converter in :mod:`vidssl.models.convert_bevt`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.video.swin_transformer import PatchEmbed3d, SwinTransformer3d
from torchvision.ops import StochasticDepth


class VideoSwin(SwinTransformer3d):
    """Video Swin Transformer backbone on ``B×C×T×H×W``.

    Args:
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, stochastic_depth_prob:
            as torchvision's ``SwinTransformer3d``.
        in_channels: 3 for RGB (2 for optical flow).
        mask_token: create a learnable token (init N(0, 0.02) truncated) that replaces masked
            patch tokens when ``forward`` gets a ``mask``.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = (2, 4, 4),
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] = (8, 7, 7),
        mlp_ratio: float = 4.0,
        stochastic_depth_prob: float = 0.1,
        in_channels: int = 3,
        mask_token: bool = False,
    ):
        super().__init__(
            patch_size=list(patch_size),
            embed_dim=embed_dim,
            depths=list(depths),
            num_heads=list(num_heads),
            window_size=list(window_size),
            mlp_ratio=mlp_ratio,
            stochastic_depth_prob=stochastic_depth_prob,
            patch_embed=partial(PatchEmbed3d, in_channels=in_channels),
        )
        self.head = nn.Identity()  # a backbone has no classifier
        self.embed_dim = self.num_features
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, 1, embed_dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def _embed(self, x: Tensor, mask: Tensor | None) -> Tensor:
        tokens = self.patch_embed(x)  # B×T'×H'×W'×C
        if mask is not None:
            if not hasattr(self, "mask_token"):
                raise ValueError("this VideoSwin has no mask token; build it with mask_token=True to pass a mask")
            if tuple(mask.shape) != tuple(tokens.shape[:4]):
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} must equal the patch-token grid {tuple(tokens.shape[:4])}"
                )
            m = mask.to(tokens.dtype).unsqueeze(-1)
            tokens = tokens * (1 - m) + self.mask_token.to(tokens.dtype) * m
        return self.pos_drop(tokens)

    def forward_stages(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Each stage's output tokens before patch merging, ``B×T'×H_s×W_s×C_s`` (channels last, no final norm)."""
        tokens = self._embed(x, mask)
        stages = []
        for layer in self.features:
            tokens = layer(tokens)
            if isinstance(layer, nn.Sequential):  # a stage of Swin blocks (the others merge patches)
                stages.append(tokens)
        return stages

    def forward(self, x: Tensor, return_features: bool = False, mask: Tensor | None = None):
        """``B×C×T×H×W`` → ``B×D`` (and the map ``B×D×T'×H'×W'`` after the final LayerNorm)."""
        tokens = self.features(self._embed(x, mask))
        fmap = self.norm(tokens).permute(0, 4, 1, 2, 3)
        embedding = fmap.mean(dim=(2, 3, 4))
        return (embedding, fmap) if return_features else embedding


def swin3d_t(**kwargs) -> VideoSwin:
    """Video Swin-T (torchvision ``swin3d_t`` without head)."""
    return VideoSwin(**{"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), **kwargs})


def swin3d_s(**kwargs) -> VideoSwin:
    """Video Swin-S (torchvision ``swin3d_s`` without head)."""
    return VideoSwin(**{"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), **kwargs})


def swin3d_b(**kwargs) -> VideoSwin:
    """Video Swin-B (torchvision ``swin3d_b`` without head; BEVT's backbone with ``stochastic_depth_prob=0.3``)."""
    return VideoSwin(**{"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), **kwargs})


def swin3d_tiny(**kwargs) -> VideoSwin:
    """A 0.36 M-parameter Video Swin for CPU tests (128-d)."""
    defaults = {"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 2, 4), "window_size": (2, 4, 4)}
    return VideoSwin(**{**defaults, **kwargs})


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "swin3d_t": swin3d_t,
    "swin3d_s": swin3d_s,
    "swin3d_b": swin3d_b,
    "swin3d_tiny": swin3d_tiny,
}


# =============================================================================================
# The BEVT Swin: one parameter set, a 3-D path for clips and a 2-D path for images
# =============================================================================================


def _relative_position_index(window: tuple[int, int, int], table_window: tuple[int, int, int]) -> Tensor:
    """``N×N`` indices (N = prod(window)) into a ``(2Wd-1)(2Wh-1)(2Ww-1)`` table built for ``table_window``.

    For a window smaller than the table's (a feature map no bigger than the window on some axis,
    or an image: depth 1) the index keeps the geometry of the table: a pair of tokens at offset
    (dt, dy, dx) reads the entry of that offset. For an image (window depth 1) that is the
    temporal-offset-0 slice of the 3-D table — exactly BEVT's ``relative_position_index[:49, :49]``.
    (Official Video Swin slices ``[:N, :N]`` for every smaller window, which equals this when only
    the depth shrinks — the Swin-B/224² case — and mis-addresses the table when height or width
    shrink; we always use the true offsets.)
    """
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)  # 3×N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N×N×3
    wd, wh, ww = table_window
    rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1])
    return rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]


def _window_partition(x: Tensor, window: tuple[int, int, int]) -> Tensor:
    """``B×D×H×W×C`` → ``B×nW×N×C`` (windows in d, h, w order; N = prod(window))."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, -1, wd * wh * ww, c)


def _window_reverse(windows: Tensor, window: tuple[int, int, int], size: tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`_window_partition`: ``B×nW×N×C`` → ``B×D×H×W×C``."""
    b, _, _, c = windows.shape
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, d, h, w, c)


_SHIFT_MASKS: dict[tuple, Tensor] = {}


def _shift_mask(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int],
                device: torch.device) -> Tensor:
    """Additive ``nW×N×N`` mask (0 / -100, as Swin) that keeps a shifted window's attention inside the
    regions the cyclic shift brought together. Cached per (padded size, window, shift, device)."""
    key = (size, window, shift, str(device))
    if key not in _SHIFT_MASKS:
        labels = torch.zeros(1, *size, 1)
        count = 0
        slices = [(slice(0, -w), slice(-w, -s), slice(-s, None)) if s > 0 else (slice(None),)
                  for w, s in zip(window, shift)]
        for sd in slices[0]:
            for sh in slices[1]:
                for sw in slices[2]:
                    labels[:, sd, sh, sw, :] = count
                    count += 1
        regions = _window_partition(labels, window)[0, :, :, 0]  # nW×N
        diff = regions.unsqueeze(1) - regions.unsqueeze(2)
        _SHIFT_MASKS[key] = torch.where(diff != 0, -100.0, 0.0).to(device)
    return _SHIFT_MASKS[key]


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a 3-D relative position bias table.

    With ``fused = True`` (default) attention runs through ``F.scaled_dot_product_attention`` with the
    bias (+ the shift mask) as an additive float mask, so a GPU can use the fused memory-efficient
    kernel; ``fused = False`` computes ``softmax(q·kᵀ/√d + bias)·v`` with explicit matmuls (torchvision's
    way), kept because which one is faster depends on the GPU and on ``torch.compile``
    (``benchmarks/bench_bevt_swin.py`` times both). Both give the same output. Parameter names are the
    official Video Swin / BEVT ones (``qkv``, ``proj``, ``relative_position_bias_table``).
    """

    def __init__(self, dim: int, window_size: tuple[int, int, int], num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        wd, wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(self.window_size, self.window_size),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.fused = True
        self._index_cache: dict[tuple, Tensor] = {}

    def relative_position_bias(self, window: tuple[int, int, int]) -> Tensor:
        """``heads×N×N`` bias for an (effective) window; an image's window (1, h, w) reads offset 0 in time."""
        if tuple(window) == self.window_size:
            index = self.relative_position_index
        else:
            key = (tuple(window), str(self.relative_position_bias_table.device))
            if key not in self._index_cache:
                self._index_cache[key] = _relative_position_index(tuple(window), self.window_size).to(
                    self.relative_position_bias_table.device)
            index = self._index_cache[key]
        n = index.shape[0]
        return self.relative_position_bias_table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: Tensor, window: tuple[int, int, int], mask: Tensor | None) -> Tensor:
        """``x``: ``B×nW×N×C`` windows; ``mask``: additive ``nW×N×N`` or None → ``B×nW×N×C``."""
        b, nw, n, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5).unbind(0)  # B×nW×h×N×hd
        bias = self.relative_position_bias(window).to(q.dtype)  # h×N×N
        if not self.fused:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias  # B×nW×h×N×N
            if mask is not None:
                scores = scores + mask.to(q.dtype).unsqueeze(1)
            out = scores.softmax(-1).to(v.dtype) @ v  # B×nW×h×N×hd
            return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))
        if mask is None:  # the bias is shared by every window: broadcast it over B·nW
            out = F.scaled_dot_product_attention(q.reshape(b * nw, h, n, -1), k.reshape(b * nw, h, n, -1),
                                                 v.reshape(b * nw, h, n, -1), attn_mask=bias.unsqueeze(0))
        else:  # windows × heads in one axis so the nW×h×N×N mask broadcasts over the batch only
            attn_mask = (bias.unsqueeze(0) + mask.to(q.dtype).unsqueeze(1)).reshape(1, nw * h, n, n)
            out = F.scaled_dot_product_attention(q.reshape(b, nw * h, n, -1), k.reshape(b, nw * h, n, -1),
                                                 v.reshape(b, nw * h, n, -1), attn_mask=attn_mask)
        out = out.view(b, nw, h, n, -1).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock3D(nn.Module):
    """Pre-norm Swin block (W-MSA or SW-MSA, then MLP) on ``B×D×H×W×C``, with padding to whole windows."""

    def __init__(self, dim: int, num_heads: int, window_size: tuple[int, int, int], shifted: bool,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.window_size = tuple(window_size)
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, self.window_size, num_heads, qkv_bias)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def window_and_shift(self, size: tuple[int, int, int]) -> tuple[tuple, tuple]:
        """The effective window (clamped to the feature size) and shift (half the window, zeroed on axes
        no bigger than the window; Video Swin's ``get_window_size``)."""
        window = tuple(min(s, w) for s, w in zip(size, self.window_size))
        if not self.shifted:
            return window, (0, 0, 0)
        return window, tuple(0 if s <= w else w // 2 for s, w in zip(size, self.window_size))

    def attention(self, x: Tensor, image_quirks: bool) -> Tensor:
        b, d, h, w, c = x.shape
        if image_quirks:  # BEVT's 2-D path: the 7×7 window and its shift mask in EVERY block (see SwinBEVT)
            window = (1, self.window_size[1], self.window_size[2])
            shift = (0, self.window_size[1] // 2, self.window_size[2] // 2)
            roll = shift if self.shifted else (0, 0, 0)
        else:
            window, shift = self.window_and_shift((d, h, w))
            roll = shift
        pads = [(wi - si % wi) % wi for si, wi in zip((d, h, w), window)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        size = (d + pads[0], h + pads[1], w + pads[2])
        if any(roll):
            x = torch.roll(x, shifts=tuple(-s for s in roll), dims=(1, 2, 3))
        mask = _shift_mask(size, window, shift, x.device) if (any(roll) or (image_quirks and any(shift))) else None
        out = self.attn(_window_partition(x, window), window, mask)
        x = _window_reverse(out, window, size)
        if any(roll):
            x = torch.roll(x, shifts=roll, dims=(1, 2, 3))
        return x[:, :d, :h, :w].contiguous() if any(pads) else x

    def forward(self, x: Tensor, image_quirks: bool = False) -> Tensor:
        x = x + self.drop_path(self.attention(self.norm1(x), image_quirks))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging3D(nn.Module):
    """2×2 spatial neighbours concatenated (``4C``), LayerNorm, Linear to ``2C`` (no bias); pads odd sizes."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Swin blocks (alternating plain and shifted windows) then an optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock3D(dim, num_heads, window_size, shifted=i % 2 == 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                        drop_path=drop_paths[i]) for i in range(depth)])
        self.downsample = PatchMerging3D(dim) if downsample else None

    def forward(self, x: Tensor, image_quirks: bool = False) -> tuple[Tensor, Tensor]:
        """→ (this stage's output before merging, the merged input of the next stage)."""
        for block in self.blocks:
            x = block(x, image_quirks)
        return x, (self.downsample(x) if self.downsample is not None else x)


class PatchEmbed(nn.Module):
    """Conv patchify (2-D or 3-D) + LayerNorm; pads the input to whole patches; output channels last."""

    def __init__(self, patch_size: Sequence[int], in_channels: int, dim: int, norm: bool = True):
        super().__init__()
        self.patch_size = tuple(patch_size)
        conv = nn.Conv3d if len(self.patch_size) == 3 else nn.Conv2d
        self.proj = conv(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        pads: list[int] = []
        for size, p in zip(reversed(x.shape[2:]), reversed(self.patch_size)):
            pads += [0, (p - size % p) % p]
        if any(pads):
            x = F.pad(x, pads)
        x = self.proj(x)
        x = x.permute(0, *range(2, x.dim()), 1)  # channels last
        return self.norm(x) if self.norm is not None else x


class SwinBEVT(nn.Module):
    """Video Swin with BEVT's shared 2-D/3-D paths, a mask token and per-stage outputs.

    One parameter set serves both streams (reference §3.3): every block (qkv, proj, MLP, norms and the
    3-D relative-position table), the patch mergings, ``mask_token`` and the final ``norm``. Only the
    patch embeddings differ: ``patch_embed`` (Conv3d, patch 2×4×4) for clips ``B×C×T×H×W`` and
    ``patch_embed_2d`` (Conv2d 4×4) for images ``B×C×H×W``. An image is run as a one-frame clip:
    its windows are (1, 7, 7) and their bias is the temporal-offset-0 slice of the 3-D table.

    ``image_quirks=True`` reproduces two behaviours of BEVT's 2-D path (``swin_transformer_bevt.py``)
    for official checkpoints: the image path applies the shifted-window region mask in the NON-shifted
    blocks too, and it shifts (with that mask) even where the map is no bigger than the window (stage 4
    at 224²). The default (False) treats images exactly like one-frame clips (the mask only where a
    shift happened, no shift on a 7×7 map), which is what the design describes.

    Parameter names are the official Video Swin / BEVT names (``patch_embed.proj``, ``layers.{i}.blocks.{j}
    .attn.qkv``, ``layers.{i}.downsample.reduction``, ``norm``, ``mask_token``, ``patch_embed_2d``), so
    BEVT checkpoints load after stripping ``backbone.`` (:mod:`vidssl.models.convert_bevt`). The decoders
    (``fpn*``, ``lm_down*``) are not here: they belong to the pretraining method (:mod:`vidssl.methods.bevt`).

    ``fused_attention``: SDPA (True) or explicit matmul attention (False), see :class:`WindowAttention3D`.

    ``forward(x, return_features=False, mask=None)``: the pooled embedding ``B×D`` (mean of the final
    LayerNorm'd tokens) and optionally the map ``B×D×T'×H'×W'`` (images: ``T' = 1``).
    ``mask``: bool ``B×T_m×H_m×W_m`` (images ``B×H_m×W_m``) on any grid that divides the patch-token grid
    (BEVT: 14×14 mask units, nearest-upsampled ×4); masked tokens become ``mask_token``.
    """

    def __init__(self, patch_size: Sequence[int] = (2, 4, 4), embed_dim: int = 128, depths: Sequence[int] = (2, 2, 18, 2),
                 num_heads: Sequence[int] = (4, 8, 16, 32), window_size: Sequence[int] = (8, 7, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.3, in_channels: int = 3,
                 patch_norm: bool = True, image_path: bool = True, image_quirks: bool = False,
                 fused_attention: bool = True):
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.window_size = tuple(int(w) for w in window_size)
        self.image_quirks = image_quirks
        self.patch_embed = PatchEmbed(self.patch_size, in_channels, embed_dim, patch_norm)
        if image_path:
            self.patch_embed_2d = PatchEmbed(self.patch_size[1:], in_channels, embed_dim, patch_norm)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # official: float32 steps
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(SwinStage(embed_dim * 2**i, depth, heads, self.window_size, mlp_ratio, qkv_bias,
                                         rates[start:start + depth], downsample=i < len(depths) - 1))
        self.stage_dims = [embed_dim * 2**i for i in range(len(depths))]
        self.embed_dim = self.stage_dims[-1]
        self.norm = nn.LayerNorm(self.embed_dim)
        self.apply(self._init_weights)
        self.set_fused_attention(fused_attention)

    def set_fused_attention(self, fused: bool) -> None:
        """SDPA (True) or explicit matmul + softmax (False) attention in every block; same outputs."""
        for module in self.modules():
            if isinstance(module, WindowAttention3D):
                module.fused = fused

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth rising linearly from 0 to ``rate`` over the blocks (e.g. fine-tuning's 0.3 / 0.4)."""
        blocks = [block for layer in self.layers for block in layer.blocks]
        for block, p in zip(blocks, torch.linspace(0, rate, len(blocks), device="cpu").tolist()):
            block.drop_path = StochasticDepth(p, "row") if p > 0 else nn.Identity()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def embed(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, bool]:
        """Patch tokens ``B×T'×H'×W'×C`` (images: ``T' = 1``) with masked tokens replaced; and whether x is an image."""
        is_image = x.dim() == 4
        if is_image:
            if not hasattr(self, "patch_embed_2d"):
                raise ValueError("this SwinBEVT was built with image_path=False; it takes clips B×C×T×H×W only")
            tokens = self.patch_embed_2d(x).unsqueeze(1)
        elif x.dim() == 5:
            tokens = self.patch_embed(x)
        else:
            raise ValueError(f"expected a clip B×C×T×H×W or an image B×C×H×W, got shape {tuple(x.shape)}")
        if mask is not None:
            if is_image and mask.dim() == 3:
                mask = mask.unsqueeze(1)
            if mask.dim() != 4 or mask.shape[0] != tokens.shape[0]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not fit input {tuple(x.shape)}: "
                                 "expected B×T_m×H_m×W_m (images B×H_m×W_m)")
            from vidssl.models.masking import upsample_mask

            try:
                m = upsample_mask(mask.bool(), tuple(tokens.shape[1:4]))
            except ValueError as error:
                raise ValueError(f"mask shape {tuple(mask.shape)} must divide the patch-token grid "
                                 f"{tuple(tokens.shape[1:4])}: {error}") from None
            m = m.unsqueeze(-1).to(tokens.dtype)
            tokens = tokens * (1 - m) + self.mask_token.to(tokens.dtype) * m
        return tokens, is_image

    def forward_stages(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Each stage's output before patch merging, ``B×T'×H_s×W_s×C_s`` (channels last, no final norm)."""
        tokens, is_image = self.embed(x, mask)
        quirks = is_image and self.image_quirks
        outputs = []
        for layer in self.layers:
            out, tokens = layer(tokens, quirks)
            outputs.append(out)
        return outputs

    def forward(self, x: Tensor, return_features: bool = False, mask: Tensor | None = None):
        last = self.forward_stages(x, mask)[-1]
        fmap = self.norm(last).permute(0, 4, 1, 2, 3)
        embedding = fmap.mean(dim=(2, 3, 4))
        return (embedding, fmap) if return_features else embedding


def swin_bevt_b(**kwargs) -> SwinBEVT:
    """BEVT's Video Swin-B (embed 128, depths 2-2-18-2, heads 4-8-16-32, window 8×7×7, drop path 0.3)."""
    return SwinBEVT(**kwargs)


def swin_bevt_tiny(**kwargs) -> SwinBEVT:
    """A small SwinBEVT for CPU runs: embed 32, depths 1-1-2-1, heads 1-2-4-8, window (2, 4, 4)."""
    defaults = {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "window_size": (2, 4, 4),
                "drop_path_rate": 0.1}
    return SwinBEVT(**{**defaults, **kwargs})


BUILDERS.update({"swin_bevt_b": swin_bevt_b, "swin_bevt_tiny": swin_bevt_tiny})
