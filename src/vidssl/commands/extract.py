"""``vidssl extract``: features of a dataset from a frozen encoder, under a view protocol, cached on disk.

An encoder with an input contract is fed the contract's view protocol by default and always the
contract's normalisation (:func:`vidssl.eval.views.protocol_for`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  vidssl extract --checkpoint runs/x --data data/demo --views demo --set test --out feats/demo_test
  vidssl extract --backbone r3d18_fgkv_tiny --data data/demo --views demo --set train --passes 2 --out feats/rand_train
  vidssl extract --checkpoint runs/x --data data/ucf101 --views fgkvmem --split 2 --out feats/ucf_s2_test

Writes OUT/features.npz (features N×V×D float32, labels N, indices N) and OUT/meta.json (protocol,
encoder, input contract or "none", dataset fingerprint, cache key).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "extract", help="extract frozen-encoder features of a dataset (cached, resumable)",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="pretrain run directory, encoder.safetensors or .ckpt")
    parser.add_argument("--backbone", help="a randomly initialised backbone of this name instead")
    parser.add_argument("--backbone-kwargs", default="{}", help='JSON builder arguments of --backbone, e.g. \'{"width": 16}\'')
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", type=int, default=1, help="official split (fold) number (default 1)")
    parser.add_argument("--set", dest="subset", choices=["train", "test"], default="test", help="which half of the split")
    parser.add_argument("--views", help="view protocol: brave, gdt, fgkvmem, demo, demo_quick (default: the encoder's "
                        "input contract's, else fgkvmem); the normalisation always follows the contract")
    parser.add_argument("--clips", type=int, help="override K, temporal clips per video")
    parser.add_argument("--crops", type=int, help="override S, spatial crops per clip")
    parser.add_argument("--passes", type=int, default=0, help="N augmented passes (one random clip each) instead of K×S views")
    parser.add_argument("--out", required=True, help="output directory (features.npz + meta.json)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "vidssl" / "features"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--max-unreadable", type=float, default=0.05, metavar="FRACTION",
                        help="unreadable videos are excluded (never replaced) and named in meta.json; stop when "
                             "more than this fraction of the set is unreadable (default 0.05)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from vidssl.commands.eval import parse_backbone_kwargs
    from vidssl.errors import UserError
    from vidssl.eval.features import extract_features, load_eval_encoder, open_dataset, protocol_for
    from vidssl.eval.splits import parse_split

    if bool(args.checkpoint) == bool(args.backbone):
        raise UserError("give exactly one of --checkpoint PATH or --backbone NAME")
    if args.passes < 0:
        raise UserError(f"--passes must be >= 0, got {args.passes}")
    for name in ("clips", "crops", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.num_workers < 0:
        raise UserError(f"--num-workers must be >= 0, got {args.num_workers}")
    from vidssl.io import output_dir

    output_dir(args.out)
    if not 0.0 <= args.max_unreadable <= 1.0:
        raise UserError(f"--max-unreadable is a fraction in [0, 1], got {args.max_unreadable}")
    manifest = open_dataset(args.data)
    (fold,) = parse_split(str(args.split), manifest.folds)
    encoder, info = load_eval_encoder(args.checkpoint, args.backbone, seed=args.seed,
                                      backbone_kwargs=parse_backbone_kwargs(args.backbone_kwargs))
    choice = protocol_for(encoder, args.views, default="fgkvmem", temporal_clips=args.clips, spatial_crops=args.crops)
    features = extract_features(
        encoder, info, manifest, choice.protocol, args.subset, fold, passes=args.passes, cache_dir=args.cache_dir,
        device=args.device, batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
        progress=not args.quiet, max_unreadable=args.max_unreadable,
    )
    features.meta.update(choice.record())
    path = features.save(args.out)
    for note in choice.notes:
        print(f"note: {note}")
    n, v, d = features.features.shape
    print(f"{n} videos × {v} views × {d} dims ({features.meta.get('cache')} in cache) -> {path}")
    excluded = features.meta.get("excluded") or {}
    if excluded:
        print(f"excluded {len(excluded)} of {features.meta.get('videos')} videos as unreadable (not replaced; "
              f"listed in {Path(args.out) / 'meta.json'}):")
        for video, reason in list(excluded.items())[:10]:
            print(f"  {video}: {reason}")
    return 0
