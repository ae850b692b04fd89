"""A masked Video Swin training step (vidssl's SwinBEVT) next to torchvision's ``swin3d_t``, same size and batch.

Both networks have Swin-T's sizes (embed 96, depths 2-2-6-2, heads 3-6-12-24, patch 2×4×4, window 8×7×7,
drop path 0.1) and see the same float clips ``B×3×T×H×W``; one step = forward + a mean-square loss on the
last stage's tokens + backward + AdamW step (fused on GPU), in this process.

- ``torchvision``: ``torchvision.models.video.swin3d_t`` (its head replaced by identity), no mask, eager
  matmul/softmax attention; timed in plain fp32 (the baseline a user gets out of the box) and, on GPU,
  under the same bf16 autocast as vidssl.
- ``vidssl``: ``SwinBEVT`` with a BEVT tube mask (98 of 14×14 cells over 4–8 of the T/2 temporal cells,
  drawn on the host every step, copied without a wait) replacing masked tokens by the mask token; bf16 autocast on GPU;
  attention through ``scaled_dot_product_attention`` (``fused``) or explicit matmuls (``explicit``);
  ``--compile`` adds ``torch.compile`` of the faster eager attention (compilation time is not timed).

Prints every step time and the ratio torchvision / vidssl (> 1: vidssl is faster) against both baselines,
each line as soon as it is measured.

Examples::

    python benchmarks/bench_bevt_swin.py                                # CPU: batch 1, 16×112², fp32
    python benchmarks/bench_bevt_swin.py --batch 8 --size 224 --compile # GPU: bf16, eager and compiled
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
    parser.add_argument("--compile", action="store_true", help="also torch.compile the vidssl model (GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from vidssl.models.backbones.swin import SwinBEVT
    from vidssl.models.masking import tube_masks

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    torch.manual_seed(0)
    sizes = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=(8, 7, 7), drop_path_rate=0.1)
    ours = SwinBEVT(**sizes).to(device).train()
    theirs = torchvision.models.video.swin3d_t(weights=None)
    theirs.head = torch.nn.Identity()
    theirs = theirs.to(device).train()
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    grid = args.size // 16
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else contextlib.nullcontext()
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=gpu or None)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=gpu or None)
    print(f"device {torch.cuda.get_device_name() if gpu else 'cpu'}, clips {args.batch}×3×{args.frames}×{args.size}², "
          f"vidssl {'bf16' if gpu else 'fp32'}", flush=True)

    def step_ours(forward):
        def step():
            mask = tube_masks(args.batch, args.frames // 2, grid, grid, max(1, grid * grid // 2),
                              min_cells=min(16, max(1, grid * grid // 4)), device=device)
            with bf16:
                loss = forward(clip, mask)[-1].float().square().mean()
            loss.backward()
            opt_ours.step()
            opt_ours.zero_grad(set_to_none=True)
        return step

    def step_theirs(precision):
        def step():
            with precision:
                tokens = theirs.features(theirs.pos_drop(theirs.patch_embed(clip)))
                loss = tokens.float().square().mean()
            loss.backward()
            opt_theirs.step()
            opt_theirs.zero_grad(set_to_none=True)
        return step

    def draw(on: torch.device):  # vidssl draws on the host; a generator on the GPU draws there
        generator = torch.Generator(device=on).manual_seed(0)
        return lambda: tube_masks(args.batch, args.frames // 2, grid, grid, max(1, grid * grid // 2),
                                  min_cells=min(16, max(1, grid * grid // 4)), device=device, generator=generator)
    mask_ms = {str(d): 1000 * timed(draw(d), 20, 3, device) for d in {device, torch.device("cpu")}}
    print("tube-mask draw per step: " + ", ".join(f"{v:.2f} ms on {k}" for k, v in mask_ms.items()), flush=True)

    baselines = {"fp32": timed(step_theirs(contextlib.nullcontext()), args.steps, args.warmup, device)}
    print(f"torchvision swin3d_t, fp32 eager: {baselines['fp32'] * 1000:.1f} ms/step", flush=True)
    if gpu:
        baselines["bf16"] = timed(step_theirs(bf16), args.steps, args.warmup, device)
        print(f"torchvision swin3d_t, bf16 eager: {baselines['bf16'] * 1000:.1f} ms/step", flush=True)

    def report(name: str, seconds: float) -> None:
        ratios = ", ".join(f"{b} baseline {t / seconds:.2f}x" for b, t in baselines.items())
        print(f"vidssl SwinBEVT {name}: {seconds * 1000:.1f} ms/step; torchvision / vidssl: {ratios}", flush=True)

    eager = {}
    for fused in (True, False):
        ours.set_fused_attention(fused)
        name = "fused (SDPA)" if fused else "explicit"
        eager[fused] = timed(step_ours(ours.forward_stages), args.steps, args.warmup, device)
        report(f"{name} attention, eager", eager[fused])
    if args.compile:
        fused = min(eager, key=eager.get)
        ours.set_fused_attention(fused)
        compiled = torch.compile(ours.forward_stages)
        report(f"{'fused (SDPA)' if fused else 'explicit'} attention, compiled",
               timed(step_ours(compiled), args.steps, max(args.warmup, 2), device))


if __name__ == "__main__":
    main()
