"""Training-step throughput of FGKVMemPred (vidssl) next to a plain-PyTorch fp32 eager BYOL step.

Both run in this process on the same backbone, with the same synthetic batch of videos
(ρ = 2 clips each). Samples/s counts videos per second.

- ``vidssl``: ``FGKVMemPred`` from a preset, one optimiser step as the engine runs it:
  device augmentation of the uint8 clips, online + EMA forward of both clips, memory
  predictor and concept losses, backward, LARS step, EMA update; bf16 autocast and
  channels-last-3d on GPU (``--compile`` adds ``torch.compile`` of the encoder).
- ``baseline``: the textbook BYOL step written directly in PyTorch (fp32, eager,
  torch.optim.SGD), encoder + projector + MLP predictor + EMA target, on pre-augmented
  float views (so it does LESS work than the vidssl step: no augmentation, no memory).

Examples::

    # CPU, tiny preset (what the numbers in the report were measured with)
    python benchmarks/bench_train_step.py --preset fgkvmem_full_r3d18_demo_tiny --batch 16 --steps 5
    # GPU, the seed's recipe: R3D-18, 16×112², batch 64
    python benchmarks/bench_train_step.py --preset fgkvmem_full_r3d18_ucf101 --batch 64 --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
from _timing import timed
import torch.nn.functional as F
from torch import nn




def build_vidssl_step(preset: str, overrides: list[str], batch: dict, device: torch.device, compile_: bool):
    from vidssl.methods import METHODS
    from vidssl.methods.base import ema_update
    from vidssl.methods.train import load_pretrain_config
    from vidssl.optim import build_optimizer

    cfg = load_pretrain_config(preset, overrides + [f"trainer.compile={compile_}"])
    method = METHODS[cfg.method.name](cfg, num_classes=10).to(device)
    if device.type == "cuda" and cfg.trainer.channels_last:
        method = method.to(memory_format=torch.channels_last_3d)
    if compile_:
        method.encoder.compile()
    optimizer = build_optimizer(cfg.optim, method.param_groups(), device_type=device.type)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())
    pairs = [(method.get_submodule(o), method.get_submodule(t)) for o, t in method._ema_pairs]

    def step():
        views = method.make_views(batch)
        with autocast:
            loss = method.compute_loss(views, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for online, target in pairs:
            ema_update(online, target, 0.996)

    return step, cfg


class PlainBYOL(nn.Module):
    """Textbook BYOL in plain PyTorch: encoder → projector → predictor; EMA target encoder + projector."""

    def __init__(self, encoder: nn.Module, hidden: int, dim: int):
        super().__init__()

        def mlp(i):
            return nn.Sequential(nn.Linear(i, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))

        self.encoder, self.projector, self.predictor = encoder, mlp(encoder.embed_dim), mlp(dim)
        self.target = copy.deepcopy(nn.Sequential(self.encoder, self.projector)).requires_grad_(False)

    def loss(self, v1, v2):
        def regress(p, z):
            return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()

        p1 = self.predictor(self.projector(self.encoder(v1)))
        p2 = self.predictor(self.projector(self.encoder(v2)))
        with torch.no_grad():
            z1, z2 = self.target(v1), self.target(v2)
        return regress(p1, z2) + regress(p2, z1)


def build_baseline_step(cfg, views: list[torch.Tensor], device: torch.device):
    from vidssl.models.backbones import build_backbone

    m = cfg.method
    model = PlainBYOL(build_backbone(m.backbone, **m.backbone_kwargs), m.proj_hidden_dim, m.proj_dim).to(device)
    online = [p for n, p in model.named_parameters() if not n.startswith("target.")]
    optimizer = torch.optim.SGD(online, lr=0.1, momentum=0.9)
    online_net = nn.Sequential(model.encoder, model.projector)

    def step():
        loss = model.loss(*views)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for t, o in zip(model.target.parameters(), online_net.parameters()):
                t.mul_(0.996).add_(o.detach(), alpha=0.004)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="default: the tiny preset on CPU, the UCF101 R3D-18 one on GPU")
    parser.add_argument("--batch", type=int, default=None, help="videos per step (default 16 CPU, 64 GPU)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the vidssl encoder")
    parser.add_argument("overrides", nargs="*", help="preset overrides, key=value")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    preset = args.preset or ("fgkvmem_full_r3d18_ucf101" if gpu else "fgkvmem_full_r3d18_demo_tiny")
    batch_size = args.batch or (64 if gpu else 16)
    torch.manual_seed(0)

    from vidssl.methods.train import load_pretrain_config

    cfg = load_pretrain_config(preset, args.overrides)
    m = cfg.method
    from vidssl.data.synthetic import synthetic_batch
    from vidssl.methods import METHODS

    batch = synthetic_batch(METHODS[cfg.method.name](cfg).data_streams(), batch_size, num_classes=10, device=device)

    ours, cfg = build_vidssl_step(preset, args.overrides, batch, device, args.compile)
    views = [torch.randn(batch_size, 3, m.num_frames, m.crop_size, m.crop_size, device=device) for _ in range(2)]
    base = build_baseline_step(cfg, views, device)

    t_ours = timed(ours, args.steps, args.warmup, device)
    t_base = timed(base, args.steps, args.warmup, device)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; preset {preset}; backbone {m.backbone} {m.backbone_kwargs}; "
          f"batch {batch_size} videos × {m.rho} clips × {m.num_frames}×{m.crop_size}²")
    print(f"vidssl FGKVMemPred step : {batch_size / t_ours:9.1f} samples/s ({t_ours * 1000:.0f} ms/step)")
    print(f"plain fp32 eager BYOL   : {batch_size / t_base:9.1f} samples/s ({t_base * 1000:.0f} ms/step)")
    print(f"ratio vidssl / baseline : {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
