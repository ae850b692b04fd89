"""``vidssl tokenizer``: visual tokenizers for BEVT's token targets.

- ``vidssl tokenizer train --data ROOT --out FILE.safetensors``: fit a VQ tokenizer
  (:class:`vidssl.models.tokenizers.VQTokenizer`) on random frames of the videos under ROOT (any layout
  vidssl reads), so ``method.target=vq`` works without a download.
- ``vidssl tokenizer convert-dalle encoder.pkl OUT.safetensors``: read OpenAI's DALL-E ``encoder.pkl``
  without executing it (restricted unpickler) and write its weights as safetensors for
  ``method.target=dalle method.tokenizer_path=OUT.safetensors``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  vidssl tokenizer train --data data/demo --out runs/vq_demo.safetensors --vocab 256 --steps 300
  vidssl tokenizer convert-dalle ~/dall_e/encoder.pkl ~/dall_e/encoder.safetensors
  vidssl pretrain --preset bevt_tiny --out runs/bevt method.target=vq method.tokenizer_path=runs/vq_demo.safetensors
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train a VQ tokenizer or convert the DALL-E one (BEVT targets)",
                                   description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    train = sub.add_parser("train", help="fit a VQ tokenizer on frames of your videos", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--data", required=True, help="dataset root (videos; any layout vidssl reads)")
    train.add_argument("--out", required=True, help="output .safetensors file")
    train.add_argument("--size", type=int, default=112, help="frame side the tokenizer sees (BEVT: 112 = 8 × 14)")
    train.add_argument("--vocab", type=int, default=8192, help="codebook size (BEVT's DALL-E: 8192)")
    train.add_argument("--hidden", type=int, default=64, help="conv width")
    train.add_argument("--code-dim", type=int, default=32, help="code vector size")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--num-workers", type=int, default=2)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=run_train)
    convert = sub.add_parser("convert-dalle", help="DALL-E encoder.pkl → .safetensors, without running the pickle",
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("pkl", help="encoder.pkl (https://cdn.openai.com/dall-e/encoder.pkl)")
    convert.add_argument("out", help="output .safetensors file")
    convert.set_defaults(func=run_convert)


def frame_batches(root: Path, size: int, batch_size: int, num_workers: int, seed: int):
    """Endless batches of random frames ``N×3×size×size`` in [0, 1] from the videos under ``root``."""
    import torch

    from vidssl.data.datasets import VideoDataset, collate, worker_context
    from vidssl.data.module import open_manifest
    from vidssl.data.sampling import RandomClipPlan, ViewSpec

    manifest = open_manifest(root)
    plan = RandomClipPlan(ViewSpec("frame", kind="image", canvas=(size, size)))
    epoch = 0
    while True:
        dataset = VideoDataset(manifest, plan, split=None, seed=seed + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                                             num_workers=num_workers, collate_fn=collate,
                                             multiprocessing_context=worker_context(num_workers),
                                             generator=torch.Generator().manual_seed(seed + epoch))
        for batch in loader:
            frames = batch["clips"]["frame"]  # N×H×W×C uint8
            if frames.shape[0] > 1 and torch.rand(1).item() < 0.5:
                frames = frames.flip(2)
            yield frames.permute(0, 3, 1, 2).float() / 255
        epoch += 1


def run_train(args) -> int:
    import torch

    from vidssl.errors import UserError
    from vidssl.models.tokenizers import VQTokenizer, save_vq_tokenizer, train_vq_tokenizer

    for name in ("size", "vocab", "steps", "batch_size", "hidden", "code_dim"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.size % 8:
        raise UserError(f"--size must be a multiple of 8 (the tokenizer downsamples 8×), got {args.size}")
    root = Path(args.data)
    if not root.exists():
        raise UserError(f"data root '{root}' does not exist")
    torch.manual_seed(args.seed)
    model = VQTokenizer(vocab_size=args.vocab, hidden=args.hidden, code_dim=args.code_dim)
    batches = frame_batches(root, args.size, args.batch_size, args.num_workers, args.seed)
    losses = train_vq_tokenizer(batches, model, args.steps, lr=args.lr, seed=args.seed)
    out = save_vq_tokenizer(model.eval(), args.out, {"data": str(root), "size": args.size, "steps": args.steps,
                                                     "final_reconstruction_mse": losses[-1]})
    print(f"VQ tokenizer ({args.vocab} codes) written to {out}; final reconstruction mse {losses[-1]:.4f}")
    return 0


def run_convert(args) -> int:
    from vidssl.models.tokenizers import convert_dalle_encoder

    out = convert_dalle_encoder(args.pkl, args.out)
    print(f"DALL-E encoder written to {out}")
    return 0
