"""``vidssl eval <protocol>``: measure a frozen or fine-tuned encoder on a labelled dataset.

Protocols: ``svm`` (BraVe), ``linear`` (FGKVMemPred; cached features or augmented clips),
``finetune`` (GDT/STiCA or FGKVMemPred presets), ``knn``, ``retrieval``. Each writes
``OUT/report.json``, ``OUT/report.md`` and a confusion-matrix PNG where it has one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

EPILOG = """examples:
  vidssl eval svm --checkpoint runs/x --data data/demo --views demo --C 1e-4 1e-2 1 --out runs/x/svm
  vidssl eval linear --checkpoint runs/x --data data/ucf101 --split all --out runs/x/linear
  vidssl eval linear --backbone r3d18_fgkv_tiny --data data/demo --views demo --epochs 20 --out runs/random/linear
  vidssl eval finetune --checkpoint runs/x --data data/hmdb51 --preset gdt --split all --out runs/x/ft
  vidssl eval finetune --checkpoint runs/x --data data/demo --preset tiny epochs=3 --out runs/x/ft
  vidssl eval knn --checkpoint runs/x --data data/demo --views demo --k 10 --out runs/x/knn
  vidssl eval retrieval --checkpoint runs/x --data data/ucf101 --out runs/x/retrieval
"""

DEFAULT_VIEWS = {"svm": "brave", "linear": "fgkvmem", "knn": "fgkvmem", "retrieval": "fgkvmem"}


def _common(parser: argparse.ArgumentParser, views: str | None) -> None:
    source = parser.add_argument_group("encoder (one of)")
    source.add_argument("--checkpoint", help="pretrain run directory, encoder.safetensors or .ckpt")
    source.add_argument("--backbone", help="evaluate a randomly initialised backbone of this name instead")
    source.add_argument("--backbone-kwargs", default="{}", help='JSON builder arguments of --backbone, e.g. \'{"width": 16}\'')
    parser.add_argument("--data", required=True, help="dataset root (UCF101/HMDB51 layout, or the embedded demo)")
    parser.add_argument("--split", default="1", help="official split: 1, 2, 3, a comma list or 'all' (default 1)")
    parser.add_argument("--out", required=True, help="report directory (report.json, report.md, PNGs)")
    if views is not None:
        parser.add_argument("--views", default=views, help=f"view protocol (default {views}): brave, gdt, fgkvmem, demo, demo_quick")
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
    finetune.add_argument("--preset", default="gdt", help="gdt (default), fgkvmem, fgkvmem_linear, tiny")
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
    for name in ("clips", "crops", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _features(args, encoder, info, manifest, protocol, split: str, fold: int, passes: int = 0):
    from vidssl.eval.features import extract_features

    return extract_features(
        encoder, info, manifest, protocol, split, fold, passes=passes,
        cache_dir=None if args.no_cache else args.cache_dir, device=args.device, batch_size=args.batch_size,
        num_workers=args.num_workers, seed=args.seed, progress=not args.quiet,
    )


def run(args) -> int:
    from vidssl.eval import report as reporting
    from vidssl.eval.features import get_protocol, load_eval_encoder, open_dataset
    from vidssl.eval.splits import parse_split, run_folds

    _check_args(args)
    started = time.time()
    manifest = open_dataset(args.data)
    folds = parse_split(args.split, manifest.folds)
    encoder, info = load_eval_encoder(args.checkpoint, args.backbone, seed=args.seed,
                                      backbone_kwargs=parse_backbone_kwargs(args.backbone_kwargs))
    confusions: dict[int, object] = {}
    config: dict = {"protocol": args.protocol, "data": str(args.data), "folds": folds, "seed": args.seed}
    views: dict = {}

    if args.protocol == "finetune":
        from vidssl.config import to_dict
        from vidssl.eval.finetune import finetune, finetune_config

        cfg = finetune_config(args.preset, args.overrides)
        overrides = {"temporal_clips": args.clips, "spatial_crops": args.crops}
        views = get_protocol(cfg.protocol, **overrides).describe()
        config.update(preset=args.preset, finetune=to_dict(cfg))

        def one_fold(fold: int) -> dict:
            import copy

            result = finetune(copy.deepcopy(encoder), manifest, fold, cfg, out_dir=args.out, device=args.device,
                              protocol_overrides=overrides, progress=not args.quiet)
            confusions[fold] = result.confusion
            return {**result.numbers(), "top1_per_epoch": {str(k): v for k, v in result.top1_per_epoch.items()}}

    else:
        protocol = get_protocol(args.views, temporal_clips=args.clips, spatial_crops=args.crops)
        views = protocol.describe()
        one_fold = _frozen_protocol(args, encoder, info, manifest, protocol, confusions, config)

    headline, per_split = run_folds(folds, one_fold)
    # Multi-split runs: headline = mean over splits; one confusion PNG per split.
    if len(folds) == 1:
        matrices = {"": confusions[folds[0]]} if confusions.get(folds[0]) is not None else {}
    else:
        matrices = {f"split{f}": m for f, m in confusions.items() if m is not None}
    report = reporting.write_report(
        args.out, args.protocol, headline, per_split=per_split, config=config, checkpoint=info.as_dict(),
        views=views, dataset=str(manifest.root), confusions=matrices, class_names=manifest.class_names,
        extra={"seconds": time.time() - started},
    )
    _print_summary(report, args.out)
    return 0


def _frozen_protocol(args, encoder, info, manifest, protocol, confusions, config):
    """``fold -> numbers`` for the feature-based protocols (svm, linear features/clips, knn, retrieval)."""
    num_classes = len(manifest.class_names)

    if args.protocol == "svm":
        from vidssl.eval.svm import evaluate_svm

        passes = args.passes if args.passes is not None else max(protocol.train_passes, 1)
        config.update(C=args.C, train_passes=passes)

        def one_fold(fold: int) -> dict:
            train = _features(args, encoder, info, manifest, protocol, "train", fold, passes)
            test = _features(args, encoder, info, manifest, protocol, "test", fold)
            results = evaluate_svm(train.features, train.labels, test.features, test.labels, C=args.C, num_classes=num_classes)
            confusions[fold] = results[0].confusion
            numbers = {"top1": results[0].top1, "top5": results[0].top5, "C": results[0].C}
            if len(results) > 1:
                numbers["sweep"] = {f"C={r.C:g}": {"top1": r.top1, "top5": r.top5} for r in results}
                numbers["top1_best_C_on_test"] = max(r.top1 for r in results)
            return numbers

        return one_fold

    if args.protocol == "linear" and args.mode == "clips":
        import copy

        from vidssl.config import to_dict
        from vidssl.eval.finetune import finetune, finetune_config

        cfg = finetune_config("fgkvmem_linear", [f"protocol={protocol.name}", f"epochs={args.epochs}",
                                                 f"head_lr={args.lr}", f"batch_size={args.train_batch_size}",
                                                 f"warmup_epochs={args.warmup_epochs}", f"seed={args.seed}"])
        config.update(mode="clips", finetune=to_dict(cfg))
        overrides = {"temporal_clips": args.clips, "spatial_crops": args.crops}

        def one_fold(fold: int) -> dict:
            result = finetune(copy.deepcopy(encoder), manifest, fold, cfg, out_dir=args.out, device=args.device,
                              protocol_overrides=overrides, progress=not args.quiet)
            confusions[fold] = result.confusion
            return result.numbers()

        return one_fold

    if args.protocol == "linear":
        from vidssl.config import to_dict
        from vidssl.eval.linear import LinearProbeConfig, evaluate_linear

        cfg = LinearProbeConfig(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                                warmup_epochs=min(args.warmup_epochs, args.epochs), standardize=not args.no_standardize,
                                seed=args.seed)
        passes = args.passes if args.passes is not None else protocol.train_passes
        config.update(mode="features", linear=to_dict(cfg), train_passes=passes)

        def one_fold(fold: int) -> dict:
            train = _features(args, encoder, info, manifest, protocol, "train", fold, passes)
            test = _features(args, encoder, info, manifest, protocol, "test", fold)
            result = evaluate_linear(train.features, train.labels, test.features, test.labels, cfg, num_classes)
            confusions[fold] = result.confusion
            return {"top1": result.top1, "top5": result.top5, "train_loss": result.train_loss}

        return one_fold

    if args.protocol == "knn":
        from vidssl.eval.knn import evaluate_knn

        config.update(k=args.k, temperature=args.temperature, weighted=not args.unweighted)

        def one_fold(fold: int) -> dict:
            train = _features(args, encoder, info, manifest, protocol, "train", fold)
            test = _features(args, encoder, info, manifest, protocol, "test", fold)
            result = evaluate_knn(train.features, train.labels, test.features, test.labels, k=args.k,
                                  temperature=args.temperature, weighted=not args.unweighted, num_classes=num_classes)
            confusions[fold] = result.confusion
            return {"top1": result.top1, "top5": result.top5}

        return one_fold

    from vidssl.eval.retrieval import recall_at_k

    config.update(ks=args.ks)

    def one_fold(fold: int) -> dict:
        train = _features(args, encoder, info, manifest, protocol, "train", fold)
        test = _features(args, encoder, info, manifest, protocol, "test", fold)
        return recall_at_k(train.features, train.labels, test.features, test.labels, ks=args.ks)

    return one_fold


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
