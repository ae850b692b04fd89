"""Loader-only samples/s of a *full* preset's data pipeline on this machine, GPU or not.

``vidssl bench`` on a machine without a GPU runs a preset's tiny twin; this measures the full preset's own
decode + crop pipeline instead (on the embedded dataset when the preset's data is not here, as ``vidssl
bench`` does on a GPU), with the same measurement: the batches the workers had queued are drawn untimed,
then at least two batches per worker are timed. Dividing by the workers gives a per-core rate to size
``data.num_workers`` against the step's samples/s on the GPU.

    python benchmarks/bench_preset_loader.py byol_rho2_r3d18_k400 --workers 2 --batch 16
    python benchmarks/bench_preset_loader.py bassl_r50_movienet --batch 8 data.root=MOVIES data.format=movienet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidssl.bench import BenchOptions, _bench_config, _data_configs, _loader_rate, _method
from vidssl.data.module import open_manifest, prepare_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="batches timed (at least two per worker)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="preset overrides")
    args = parser.parse_intermixed_args()
    options = BenchOptions(batch=args.batch, workers=args.workers, loader_batches=args.batches,
                           overrides=list(args.overrides))
    cfg = _bench_config(args.preset, options, gpu=True)  # gpu=True: the full preset itself, not its tiny twin
    for data in _data_configs(cfg):
        prepare_data_root(data, print)
    manifest = open_manifest(Path(cfg.data.root).expanduser(), cfg.data.format)
    method = _method(cfg, max(manifest.num_classes, 2))
    rate = _loader_rate(cfg, method, manifest, options)
    print(f"{args.preset} ({cfg.data.format} at {cfg.data.root}): loader {rate:.1f} samples/s with {args.workers} "
          f"workers, batch {args.batch} "
          f"({rate / max(1, args.workers):.1f} per worker)")


if __name__ == "__main__":
    main()
