"""A masked Video Swin training step (vidssl's SwinBEVT) next to torchvision's ``swin3d_t``, same size and batch.

Both networks have Swin-T's sizes (embed 96, depths 2-2-6-2, heads 3-6-12-24, patch 2×4×4, window 8×7×7,
drop path 0.1) and see the same float clips ``B×3×T×H×W``; one step = forward + a mean-square loss on the
last stage's tokens + backward + AdamW step, in this process.

- ``vidssl``: ``SwinBEVT`` with a BEVT tube mask (98 of 14×14 cells over 4–8 of the T/2 temporal cells,
  drawn on the device) replacing masked tokens by the mask token; attention through
  ``scaled_dot_product_attention`` with the relative-position bias (+ shift mask) as an additive mask;
  bf16 autocast and optionally ``torch.compile`` on GPU.
- ``torchvision``: ``torchvision.models.video.swin3d_t`` (its head replaced by identity), no mask, eager
  matmul/softmax attention, the same precision.

Prints both step times and the ratio torchvision / vidssl (> 1: vidssl is faster).

Examples::

    python benchmarks/bench_bevt_swin.py                                # CPU: batch 1, 16×112², fp32
    python benchmarks/bench_bevt_swin.py --batch 8 --size 224 --compile # GPU: bf16, compiled
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torchvision
from _timing import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile the vidssl model (GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from vidssl.models.backbones.swin import SwinBEVT
    from vidssl.models.masking import tube_masks

    device = torch.device(args.device)
    torch.manual_seed(0)
    sizes = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=(8, 7, 7), drop_path_rate=0.1)
    ours = SwinBEVT(**sizes).to(device).train()
    theirs = torchvision.models.video.swin3d_t(weights=None)
    theirs.head = torch.nn.Identity()
    theirs = theirs.to(device).train()
    forward_ours = torch.compile(ours.forward_stages) if args.compile else ours.forward_stages
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    grid = args.size // 16
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=device.type == "cuda" or None)

    def step_ours():
        mask = tube_masks(args.batch, args.frames // 2, grid, grid, max(1, grid * grid // 2),
                          min_cells=min(16, max(1, grid * grid // 4)), device=device)
        with autocast:
            last = forward_ours(clip, mask)[-1]
            loss = last.float().square().mean()
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_theirs():
        with autocast:
            tokens = theirs.features(theirs.pos_drop(theirs.patch_embed(clip)))
            loss = tokens.float().square().mean()
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    t_theirs = timed(step_theirs, args.steps, args.warmup, device)
    t_ours = timed(step_ours, args.steps, args.warmup, device)
    shape = f"{args.batch}×3×{args.frames}×{args.size}²"
    print(f"device {device}, clips {shape}, {'bf16' if device.type == 'cuda' else 'fp32'}"
          f"{', compiled' if args.compile else ''}")
    print(f"torchvision swin3d_t step: {t_theirs * 1000:.1f} ms")
    print(f"vidssl masked SwinBEVT (Swin-T sizes) step: {t_ours * 1000:.1f} ms")
    print(f"ratio torchvision / vidssl: {t_theirs / t_ours:.2f}x")


if __name__ == "__main__":
    main()
