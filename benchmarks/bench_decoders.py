"""PyAV vs torchcodec (CPU; CUDA when a GPU is there) on the same items, per source resolution and keyframe interval.

Uses the three datasets ``bench_prepare.py --out DIR`` leaves in DIR (raw-like 340×256 H.264 with a
keyframe every 250 frames; the same re-encoded with a keyframe every second; shrunk to a 128 short
side as well) and decodes the same items through ``VideoDataset`` with each backend — items of two
random 16-frame clips (stride 2) on a 112² canvas, one decoder thread, in this process (no workers:
the least sensitive to other load on the machine), rounds interleaved, best round reported.

Run::

    python benchmarks/bench_prepare.py --out /tmp/bp       # once: writes the three datasets
    python benchmarks/bench_decoders.py --data /tmp/bp

Prints ms per item for each backend and source, their ratio, and the load average next to each round.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from vidssl.data.datasets import VideoDataset
from vidssl.data.index import load_manifest
from vidssl.data.sampling import ViewSpec, ViewsPlan

SOURCES = {"raw": "raw 340x256, keyframe every 250 frames",
           "prepared0": "340x256, keyframe every 1 s",
           "prepared1": "short side 128, keyframe every 1 s"}


def ms_per_item(dataset: VideoDataset, items: int) -> float:
    dataset[0]  # first open, swscale / decoder set-up: not timed
    start = time.perf_counter()
    for i in range(items):
        dataset[(i * 7) % len(dataset)]
    return 1000 * (time.perf_counter() - start) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the --out folder of bench_prepare.py")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = ViewsPlan([ViewSpec(f"clip_{k}", num_frames=16, stride=2, canvas=(112, 112)) for k in (1, 2)])
    backends = {"pyav": {}, "torchcodec": {}}
    if torch.cuda.is_available():
        backends["torchcodec-cuda"] = {"device": "cuda"}
    results: dict = {}
    for key, label in SOURCES.items():
        root = Path(args.data) / key
        if not (root / "vidssl_manifest.json").is_file():
            print(f"skipping {label}: no {root / 'vidssl_manifest.json'} (run bench_prepare.py --out {args.data})")
            continue
        manifest = load_manifest(root)
        rounds: dict[str, list[float]] = {b: [] for b in backends}
        for _ in range(args.repeats):
            for backend, kwargs in backends.items():
                name = backend.split("-")[0]
                dataset = VideoDataset(manifest, plan, seed=0, decoder=name, decoder_kwargs=kwargs)
                rounds[backend].append(ms_per_item(dataset, args.items))
                print(f"  {label:38s} {backend:15s} {rounds[backend][-1]:7.1f} ms/item "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
        best = {b: min(r) for b, r in rounds.items()}
        results[label] = {"ms_per_item": rounds, "torchcodec_vs_pyav": best["pyav"] / best["torchcodec"]}
        print(f"{label}: PyAV {best['pyav']:.1f} ms/item, torchcodec {best['torchcodec']:.1f} ms/item -> torchcodec "
              f"{best['pyav'] / best['torchcodec']:.2f}x PyAV's speed", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
