"""``vidssl eval <protocol>``: measure a frozen or fine-tuned encoder on a labelled dataset.

Protocols: ``svm`` (BraVe), ``linear`` (FGKVMemPred; cached features or augmented clips),
``finetune`` (GDT/STiCA or FGKVMemPred presets), ``knn``, ``retrieval``. Each writes
``OUT/report.json``, ``OUT/report.md`` and a confusion-matrix PNG where it has one.

An encoder with an input contract is evaluated with the contract's view protocol (``--views``
picks another clip geometry) and always with the contract's normalisation
(:func:`vidssl.eval.views.protocol_for`); the orchestration is :mod:`vidssl.eval.protocols`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vidssl.eval.exclusion import DEFAULT_MAX_UNREADABLE  # light (numpy only): --help stays fast

EPILOG = """examples:
  vidssl eval svm --checkpoint runs/x --data data/demo --views demo --C 1e-4 1e-2 1 --out runs/x/svm
  vidssl eval linear --checkpoint runs/x --data data/ucf101 --split all --out runs/x/linear
  vidssl eval linear --backbone r3d18_fgkv_tiny --data data/demo --views demo --epochs 20 --out runs/random/linear
  vidssl eval linear --checkpoint runs/x --random-init --data data/demo --out runs/x/linear_random   # same views
  vidssl eval finetune --checkpoint runs/x --data data/hmdb51 --preset gdt --split all --out runs/x/ft
  vidssl eval finetune --checkpoint runs/x --data data/demo --preset tiny epochs=3 --out runs/x/ft
  vidssl eval knn --checkpoint runs/x --data data/demo --views demo --k 10 --out runs/x/knn
  vidssl eval retrieval --checkpoint runs/x --data data/ucf101 --out runs/x/retrieval
"""

#: View protocol of an encoder without an input contract (random init, files written before contracts).
DEFAULT_VIEWS = {"svm": "brave", "linear": "fgkvmem", "knn": "fgkvmem", "retrieval": "fgkvmem"}


def _common(parser: argparse.ArgumentParser, views: str | None) -> None:
    source = parser.add_argument_group("encoder (one of)")
    source.add_argument("--checkpoint", help="pretrain run directory, encoder.safetensors or .ckpt")
    source.add_argument("--backbone", help="evaluate a randomly initialised backbone of this name instead")
    source.add_argument("--backbone-kwargs", default="{}", help='JSON builder arguments of --backbone, e.g. \'{"width": 16}\'')
    source.add_argument("--random-init", action="store_true",
                        help="with --checkpoint: the same encoder randomly initialised (seeded by --seed), fed the "
                             "checkpoint's own views; the baseline a pretrained encoder must beat")
    parser.add_argument("--data", required=True, help="dataset root (UCF101/HMDB51 layout, or the embedded demo)")
    parser.add_argument("--split", default="1", help="official split: 1, 2, 3, a comma list or 'all' (default 1)")
    parser.add_argument("--out", required=True, help="report directory (report.json, report.md, PNGs)")
    if views is not None:
        parser.add_argument("--views", help=f"view protocol: brave, gdt, fgkvmem, demo, demo_quick (default: the "
                            f"encoder's input contract's, else {views}); the normalisation always follows the contract")
        parser.add_argument("--clips", type=int, help="override K, temporal clips per test video")
        parser.add_argument("--crops", type=int, help="override S, spatial crops per clip")
        parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "vidssl" / "features"),
                            help="feature cache (default ~/.cache/vidssl/features)")
        parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch during feature extraction")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (decoding)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--max-unreadable", type=float, default=DEFAULT_MAX_UNREADABLE, metavar="FRACTION",
                        help="unreadable videos are excluded (never replaced) and named in the report; stop when "
                             f"more than this fraction of a split is unreadable (default {DEFAULT_MAX_UNREADABLE})")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate an encoder: svm, linear, finetune, knn, retrieval",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="protocol", metavar="<protocol>", required=True)

    svm = sub.add_parser("svm", help="BraVe: StandardScaler + LinearSVC on frozen features, C sweep",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(svm, DEFAULT_VIEWS["svm"])
    svm.add_argument("--C", type=float, nargs="+", default=[1e-4], help="SVM regularisation, one or several (default 1e-4)")
    svm.add_argument("--passes", type=int, help="augmented passes over the train set (default: the view protocol's, 10 for brave)")

    linear = sub.add_parser("linear", help="FGKVMemPred: linear classifier on frozen features (or augmented clips)",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(linear, DEFAULT_VIEWS["linear"])
    linear.add_argument("--mode", choices=["features", "clips"], default="features",
                        help="features: train on cached features (default); clips: frozen backbone, new augmented clips every epoch")
    linear.add_argument("--epochs", type=int, default=100)
    linear.add_argument("--lr", type=float, default=0.1)
    linear.add_argument("--train-batch-size", type=int, default=32)
    linear.add_argument("--warmup-epochs", type=float, default=5.0)
    linear.add_argument("--passes", type=int, help="features mode: augmented train passes (default: the protocol's; 0 = test views)")
    linear.add_argument("--no-standardize", action="store_true", help="features mode: feed raw features (no train-set standardisation)")

    finetune = sub.add_parser("finetune", help="end-to-end fine-tuning (GDT/STiCA or FGKVMemPred recipe)",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(finetune, None)
    finetune.add_argument("--preset", "--protocol", dest="preset", default="gdt",
                          help="gdt (default), fgkvmem, fgkvmem_linear, bevt, bevt_ssv2, bevt_tiny, tiny")
    finetune.add_argument("--views", help="view protocol (default: the encoder's input contract's, else the preset's)")
    finetune.add_argument("--clips", type=int, help="override K, temporal clips per test video")
    finetune.add_argument("--crops", type=int, help="override S, spatial crops per clip")
    finetune.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=3 head_lr=0.01")

    knn = sub.add_parser("knn", help="cosine k-nearest-neighbour classification on frozen features",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(knn, DEFAULT_VIEWS["knn"])
    knn.add_argument("--k", type=int, default=20)
    knn.add_argument("--temperature", type=float, default=0.07)
    knn.add_argument("--unweighted", action="store_true", help="majority vote instead of exp(cos/T) weights")

    retrieval = sub.add_parser("retrieval", help="clip retrieval: test queries against train, R@1/5/10/20",
                               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(retrieval, DEFAULT_VIEWS["retrieval"])
    retrieval.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10, 20])

    from vidssl.commands.segment import add_scenes_parser  # BaSSL's scene protocol (its own runner)

    add_scenes_parser(sub)

    parser.set_defaults(func=run)


def parse_backbone_kwargs(text: str) -> dict:
    """``--backbone-kwargs`` JSON -> dict (a UserError when it is not a JSON object)."""
    import json

    from vidssl.errors import UserError

    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise UserError(f"--backbone-kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UserError(f"--backbone-kwargs must be a JSON object, got {text}")
    return value


def _check_args(args) -> None:
    from vidssl.errors import UserError

    if bool(args.checkpoint) == bool(args.backbone):
        raise UserError("give exactly one of --checkpoint PATH or --backbone NAME")
    if args.random_init and not args.checkpoint:
        raise UserError("--random-init takes the architecture and views of --checkpoint RUN; give it with "
                        "--checkpoint (for a backbone by name, --backbone NAME alone is random already)")
    # every number a protocol reads, refused here with the flag's name rather than deep inside it
    for name in ("clips", "crops", "batch_size", "k", "epochs", "train_batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("num_workers", "passes", "warmup_epochs"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name in ("temperature", "lr"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise UserError(f"--{name} must be > 0, got {value}")
    if any(not c > 0 for c in getattr(args, "C", None) or []):
        raise UserError(f"--C values must be > 0, got {' '.join(f'{c:g}' for c in args.C)}")
    if any(k < 1 for k in getattr(args, "ks", None) or []):
        raise UserError(f"--ks values must be >= 1, got {' '.join(map(str, args.ks))}")
    if not 0.0 <= args.max_unreadable <= 1.0:
        raise UserError(f"--max-unreadable is a fraction in [0, 1], got {args.max_unreadable}")


def _spec(args):
    """The protocol spec of the command line, and the protocol the encoder falls back to without a contract."""
    from vidssl.eval import protocols as P

    if args.protocol == "finetune":
        from vidssl.eval.finetune import finetune_config

        cfg = finetune_config(args.preset, args.overrides)
        explicit = any(o.split("=", 1)[0].strip() == "protocol" for o in args.overrides)  # protocol=NAME
        return P.FinetuneSpec(cfg), args.views or (cfg.protocol if explicit else None), cfg.protocol
    views = args.views
    default = DEFAULT_VIEWS[args.protocol]
    if args.protocol == "svm":
        return P.SVMSpec(C=args.C, passes=args.passes), views, default
    if args.protocol == "linear" and args.mode == "clips":
        from vidssl.eval.finetune import finetune_config

        cfg = finetune_config("fgkvmem_linear", [f"epochs={args.epochs}", f"head_lr={args.lr}",
                                                 f"batch_size={args.train_batch_size}",
                                                 f"warmup_epochs={args.warmup_epochs}", f"seed={args.seed}"])
        return P.FinetuneSpec(cfg, per_epoch=False), views, default
    if args.protocol == "linear":
        from vidssl.eval.linear import LinearProbeConfig

        cfg = LinearProbeConfig(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                                warmup_epochs=min(args.warmup_epochs, args.epochs),
                                standardize=not args.no_standardize, seed=args.seed)
        return P.LinearSpec(cfg, passes=args.passes), views, default
    if args.protocol == "knn":
        return P.KNNSpec(k=args.k, temperature=args.temperature, weighted=not args.unweighted), views, default
    return P.RetrievalSpec(ks=args.ks), views, default


def run(args) -> int:
    import dataclasses

    from vidssl.eval import protocols as P
    from vidssl.eval import report as reporting
    from vidssl.eval.features import load_eval_encoder, open_dataset, protocol_for
    from vidssl.eval.splits import parse_split

    _check_args(args)
    from vidssl.io import output_dir

    output_dir(args.out)
    started = time.time()
    manifest = open_dataset(args.data)
    folds = parse_split(args.split, manifest.folds)
    encoder, info = load_eval_encoder(args.checkpoint, args.backbone, seed=args.seed,
                                      backbone_kwargs=parse_backbone_kwargs(args.backbone_kwargs),
                                      random_init=args.random_init)
    spec, views, default = _spec(args)
    choice = protocol_for(encoder, views, default=default, temporal_clips=args.clips, spatial_crops=args.crops)
    protocol = choice.protocol
    if isinstance(spec, P.FinetuneSpec):
        spec.config = dataclasses.replace(spec.config, protocol=protocol.name)
    config: dict = {"protocol": args.protocol, "data": str(args.data), "folds": folds, "seed": args.seed}
    if args.protocol == "finetune":
        config["preset"] = args.preset
    elif isinstance(spec, P.FinetuneSpec):
        config["mode"] = "clips"
    config.update(spec.describe(protocol))
    extraction = P.Extraction(cache_dir=None if getattr(args, "no_cache", True) else args.cache_dir,
                              device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                              seed=args.seed, progress=not args.quiet, max_unreadable=args.max_unreadable)
    result = P.evaluate(spec, encoder, info, manifest, protocol, folds, extraction, out_dir=args.out)
    report = reporting.write_report(
        args.out, args.protocol, result.headline, per_split=result.per_split, config=config,
        checkpoint=info.as_dict(), views=protocol.describe(), dataset=str(manifest.root),
        confusions=result.confusion_images(), class_names=manifest.class_names,
        extra={"seconds": time.time() - started, **choice.record(), "excluded": result.excluded},
    )
    _print_summary(report, args.out)
    _print_excluded(result.excluded)
    for note in choice.notes:
        print(f"note: {note}")
    return 0


def _print_excluded(excluded: list[dict]) -> None:
    """Name the unreadable videos that were left out (never replaced by others)."""
    if not excluded:
        return
    print(f"excluded {len(excluded)} unreadable videos (not replaced; listed in report.json under 'excluded'):")
    for entry in excluded[:10]:
        print(f"  split {entry['fold']} {entry['set']}: {entry['path']}: {entry['reason']}")
    if len(excluded) > 10:
        print(f"  ... and {len(excluded) - 10} more")


def _print_summary(report: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vidssl eval {report['protocol']}")
    table.add_column("split")
    results = {k: v for k, v in report["results"].items() if isinstance(v, (int, float))}
    for key in results:
        table.add_column(key, justify="right")
    per_split = report.get("per_split") or {}
    if len(per_split) > 1:
        for split, numbers in per_split.items():
            table.add_row(split, *(f"{numbers.get(k, float('nan')):.4f}" if isinstance(numbers.get(k), float) else str(numbers.get(k, "")) for k in results))
    label = "mean" if len(per_split) > 1 else next(iter(per_split), "")
    table.add_row(label, *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in results.values()))
    console = Console()
    console.print(table)
    console.print(f"report: {Path(out) / 'report.json'}")
