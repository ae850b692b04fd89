"""``vidssl bench PRESET | --all``: step, loader and end-to-end throughput against plain PyTorch."""

from __future__ import annotations

import argparse
import json
import os

EPILOG = """examples:
  vidssl bench byol_rho2_r3d18_demo_tiny                   # one preset (on CPU: its tiny twin)
  vidssl bench --all --json bench.json                     # every preset (on CPU: every tiny preset)
  vidssl bench fgkvmem_full_r3d18_ucf101 --batch 64 data.root=/fast/ucf101_128   # on a GPU, prepared data

Prints, per preset: the in-memory training step vs the same model and loss in plain fp32 eager
PyTorch, the loaders alone, a real end-to-end `vidssl pretrain` of a few steps with the fraction of
step time spent waiting for data, FLOPs per sample and, on a GPU, MFU, peak memory per sample and
the largest batch that fits. Ratios compare figures measured in this process.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="throughput of a preset's step, loader and whole run against plain PyTorch",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", metavar="PRESET", help="preset name (see `vidssl pretrain --list-presets`)")
    parser.add_argument("--all", action="store_true", help="every preset (on CPU: every tiny preset)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's on GPU, 8 on CPU)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the preset's)")
    parser.add_argument("--loader-batches", type=int, default=4, help="batches timed for the loader alone, at least two per worker, after the batches the "
                        "workers had queued (default 4)")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end pretraining run")
    parser.add_argument("--no-largest-batch", action="store_true", help="skip the search for the largest batch (GPU)")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain fp32 eager step and the FLOP count (no step / plain ratio, no MFU)")
    parser.add_argument("--host-syncs", action="store_true",
                        help="only list the host syncs inside the training step (file:line; needs CUDA)")
    parser.add_argument("--data-cache", default=None,
                        help="where missing demo datasets are generated (default: a folder in the temp directory)")
    parser.add_argument("--json", default="vidssl-bench.json", help="write the figures here (default vidssl-bench.json)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="preset overrides")
    parser.set_defaults(func=run, _bench_parser=parser)


def run(args) -> int:
    import torch

    from vidssl.bench import (
        BenchOptions,
        bench_preset,
        format_host_syncs,
        format_result,
        host_sync_report,
        presets_for_all,
    )
    from vidssl.errors import ConfigError

    if args.preset and "=" in args.preset:  # `--all key=value`: the first override landed in PRESET
        args.overrides.insert(0, args.preset)
        args.preset = None
    if args.all == bool(args.preset):
        raise ConfigError("give one PRESET or --all (not both)")
    options = BenchOptions(steps=args.steps, warmup=args.warmup, batch=args.batch, workers=args.workers,
                           loader_batches=args.loader_batches, end_to_end=not args.no_end_to_end,
                           largest_batch=not args.no_largest_batch, plain=not args.no_plain,
                           overrides=list(args.overrides),
                           **({"data_cache": args.data_cache} if args.data_cache else {}))
    gpu = torch.cuda.is_available()
    presets = presets_for_all(gpu) if args.all else [args.preset]
    if not gpu:
        print("no GPU: each preset runs as its tiny twin on CPU (fp32 on both sides, so step / plain measures the "
              "engine's overhead, not a speed-up); MFU, peak memory and the largest batch need a GPU")
    results, failed = [], []
    for preset in presets:
        try:
            if args.host_syncs:
                result = host_sync_report(preset, options)
            else:
                result = bench_preset(preset, options, log=print)
        except Exception as exc:  # noqa: BLE001 (--all: one preset's failure must not lose the others' figures)
            if not args.all:
                raise
            failed.append(preset)
            result = {"preset": preset, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{preset}: FAILED ({result['error']})", flush=True)
        else:
            print(format_host_syncs(result) if args.host_syncs else format_result(result), flush=True)
        results.append(result)
        if args.json:  # after every preset: an interrupted --all keeps what it measured
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump({"results": results}, f, indent=1)
    if args.json:
        print(f"wrote {args.json}")
    if failed:
        print(f"{len(failed)} of {len(presets)} presets failed: {', '.join(failed)}")
        return 1
    return 0

