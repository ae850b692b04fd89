"""Training-step throughput of BraVe (vidssl) next to a plain-PyTorch fp32 eager BraVe step.

Both run in this process with the same backbones and the same synthetic batch (a narrow uint8
clip, a broad waveform and/or broad clip per video). Samples/s counts videos per second.

- ``vidssl``: :class:`vidssl.methods.brave.Brave` from a preset, one optimiser step as the engine
  runs it: device augmentation (narrow: crop, blur, flip, colour; broad video: + RandConv; audio:
  log-mel), narrow + broad backbones, shared head, symmetric loss, backward, LARS step;
  bf16 autocast and channels-last-3d on GPU.
- ``baseline``: the same networks and loss written directly in PyTorch (fp32, eager,
  ``torch.optim.SGD``) on pre-augmented float views, i.e. LESS work than the vidssl step.

Examples::

    # CPU, tiny preset
    python benchmarks/bench_brave_step.py --preset brave_va_tiny --batch 8 --steps 5
    # GPU, the seed's V/A recipe (TSM-50 ×1, 16×224² narrow, 10.24 s of 48 kHz audio)
    python benchmarks/bench_brave_step.py --preset brave_va_tsm50_k600 --batch 32 --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
from _timing import timed




def build_vidssl_step(cfg, batch: dict, device: torch.device):
    from vidssl.methods.brave import Brave

    method = Brave(cfg, num_classes=0).to(device)
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last_3d)
    optimizer = method.configure_optimizers()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            views = method.make_views(batch)
            loss = method.compute_loss(views, batch)["loss"]
        loss.backward()
        optimizer.step()

    return step, method


def build_baseline_step(method, views: dict[str, torch.Tensor]):
    """Plain PyTorch: copies of the same networks, the loss inlined, SGD, fp32 eager."""
    narrow = copy.deepcopy(method.encoder)
    broads = copy.deepcopy(method.broad_backbones)
    head = copy.deepcopy(method.heads)
    params = list(narrow.parameters()) + list(broads.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    kinds = method.broad_view_names()  # augmented view name -> kind

    def regress(p, z):
        p = torch.nn.functional.normalize(p, dim=-1)
        z = torch.nn.functional.normalize(z.detach(), dim=-1)
        return (1 - (p * z).sum(-1)).mean()

    def step():
        optimizer.zero_grad(set_to_none=True)
        z_n, h_n = head("narrow", narrow(views["narrow"]))
        terms = []
        for name, kind in kinds.items():
            z_b, h_b = head(kind, broads[kind](views[name]))
            terms += [regress(h_b, z_n), regress(h_n, z_b)]
        torch.stack(terms).mean().backward()
        optimizer.step()

    return step


def main() -> None:
    from vidssl.methods.train import load_pretrain_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="brave_va_tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", help="key=value preset overrides")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = load_pretrain_config(args.preset, args.overrides)
    from vidssl.data.synthetic import synthetic_batch
    from vidssl.methods.brave import Brave

    batch = synthetic_batch(Brave(cfg).data_streams(), args.batch, device=device)
    vidssl_step, method = build_vidssl_step(cfg, batch, device)
    with torch.no_grad():
        views = {name: v.float().contiguous() for name, v in method.augment(batch).items()}
    baseline_step = build_baseline_step(method, views)
    t_base = timed(baseline_step, args.steps, args.warmup, device)
    t_ours = timed(vidssl_step, args.steps, args.warmup, device)
    print(f"preset {args.preset}, batch {args.batch}, device {device}")
    print(f"baseline (fp32 eager, pre-augmented): {args.batch / t_base:8.2f} samples/s  ({t_base * 1e3:.1f} ms/step)")
    print(f"vidssl (augment + step):              {args.batch / t_ours:8.2f} samples/s  ({t_ours * 1e3:.1f} ms/step)")
    print(f"ratio vidssl / baseline: {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
