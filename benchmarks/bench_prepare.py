"""What ``vidssl data prepare`` buys the loader: clips/s from raw-like sources vs their prepared copies.

Writes a raw-like source set (``--videos`` files of 340×256 H.264 at 25 fps, ``--seconds`` long, one
keyframe every 250 frames, with audio; moving textured content so the encoder has real work),
prepares it twice with the library (``--keep-size``: only the keyframe interval shortened; and
``--short-side 128``: shrunk to the training scale as well), then measures the vidssl loader on all
three, in the same process, rounds interleaved:

* DataLoader clips/s (``--workers`` workers, items of two random 16-frame clips at stride 2 on a 112²
  canvas, as ``bench_dataloader.py --plan rho2``);
* single-process ms per item (no workers: the least sensitive to other load on the machine).

Run::

    python benchmarks/bench_prepare.py                     # a few minutes on 2 cores
    python benchmarks/bench_prepare.py --videos 24 --workers 8 --json prepare.json

Prints the load average next to every timing (``os.getloadavg()``), since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dataloader import _time_items, make_plan  # noqa: E402

from vidssl.data.datasets import VideoDataset, collate, worker_context  # noqa: E402
from vidssl.data.index import build_manifest, load_manifest  # noqa: E402
from vidssl.data.prepare import PrepareOptions, prepare_dataset  # noqa: E402


def write_raw_video(path: Path, seconds: float, seed: int, size=(256, 340), fps: int = 25, gop: int = 250) -> None:
    """An H.264 file with a moving random texture and a sine tone: a stand-in for a downloaded video."""
    import av

    rng = np.random.default_rng(seed)
    height, width = size
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture[::8, ::8], 8, 0), 8, 1)  # 8-pixel blocks: compressible, not trivial
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                                                             "preset": "veryfast", "crf": "20"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        vx, vy = rng.uniform(-3, 3, 2)
        for k in range(int(seconds * fps)):
            y, x = int(height / 2 + vy * k) % height, int(width / 2 + vx * k) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y : y + height, x : x + width]), format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(int(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, len(wave), 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, i : i + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, i, Fraction(1, 16000)
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def measure(dataset, workers: int, batch: int, items: int) -> float:
    """Clips/s of a DataLoader (forkserver workers, as in training) over ``items`` items after a warm-up batch
    per worker; every item holds 2 clips."""
    indices = [i % len(dataset) for i in range(items + workers * batch)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch,
                                         num_workers=workers, collate_fn=collate,
                                         multiprocessing_context=worker_context(workers))
    it = iter(loader)
    for _ in range(max(workers, 1)):  # worker start-up and first decodes are not timed
        next(it)
    start, count = time.perf_counter(), 0
    for b in it:
        count += len(b["label"])
    return 2 * count / (time.perf_counter() - start)


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--items", type=int, default=16, help="items timed per loader and round (2 clips each)")
    parser.add_argument("--single-items", type=int, default=8, help="items timed in one process per round")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--gop-seconds", type=float, default=1.0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    work = Path(args.out or tempfile.mkdtemp(prefix="vidssl_bench_prepare_"))
    raw = work / "raw"
    if not (raw / "vidssl_manifest.json").is_file():
        t0 = time.perf_counter()
        for i in range(args.videos):
            write_raw_video(raw / f"class{i % 2}" / f"video{i:03d}.mp4", args.seconds, seed=i)
        build_manifest(raw)
        print(f"wrote {args.videos} raw-like videos in {time.perf_counter() - t0:.1f} s ({load()})", flush=True)
    sources = {"raw (340x256, keyframe every 250 frames)": load_manifest(raw)}
    variants = {
        f"keyframe every {args.gop_seconds:g} s, same size": PrepareOptions(short_side=None, gop_seconds=args.gop_seconds),
        f"keyframe every {args.gop_seconds:g} s, short side {args.short_side}":
            PrepareOptions(short_side=args.short_side, gop_seconds=args.gop_seconds),
    }
    prepare_seconds, sizes = {}, {}
    sizes[next(iter(sources))] = sum(os.path.getsize(p) for p in raw.rglob("*.mp4"))
    for i, (name, options) in enumerate(variants.items()):
        t0 = time.perf_counter()
        report = prepare_dataset(sources[next(iter(sources))], work / f"prepared{i}", options, workers=args.workers)
        prepare_seconds[name] = time.perf_counter() - t0
        sizes[name] = report.bytes_out
        sources[name] = load_manifest(report.manifest)
        print(f"prepared '{name}' in {prepare_seconds[name]:.1f} s with {args.workers} processes ({load()})", flush=True)

    plan = make_plan("rho2", 16, 2, 112)
    datasets = {name: VideoDataset(m, plan, seed=0) for name, m in sources.items()}
    rates: dict[str, list[float]] = {name: [] for name in datasets}
    per_item: dict[str, list[float]] = {name: [] for name in datasets}
    loads = []
    for _ in range(args.repeats):  # interleaved: load from other processes hits every variant alike
        for name, dataset in datasets.items():
            loads.append(os.getloadavg()[0])
            rates[name].append(measure(dataset, args.workers, args.batch, args.items))
            print(f"  {name}: {rates[name][-1]:.1f} clips/s ({load()})", flush=True)
        for name, dataset in datasets.items():
            per_item[name].append(_time_items(dataset, args.single_items))
            print(f"  {name}: {per_item[name][-1]:.1f} ms/item in one process ({load()})", flush=True)
    base = next(iter(datasets))
    result = {"videos": args.videos, "seconds": args.seconds, "workers": args.workers, "cpus": os.cpu_count(),
              "load_average_1min_during": [min(loads), max(loads)], "variants": {}}
    print(f"\n{args.videos} videos of {args.seconds:g} s; DataLoader with {args.workers} workers, batch {args.batch}, items of "
          f"2 clips of 16x112x112 (stride 2); medians of {args.repeats} interleaved rounds; "
          f"1-min load average during the runs {min(loads):.2f}-{max(loads):.2f}")
    print(f"{'source':48s} {'MiB':>7s} {'clips/s':>8s} {'vs raw':>7s} {'ms/item 1 proc':>15s} {'vs raw':>7s}")
    for name in datasets:
        rate, ms = statistics.median(rates[name]), min(per_item[name])
        speed, speed1 = rate / statistics.median(rates[base]), min(per_item[base]) / ms
        print(f"{name:48s} {sizes[name] / 2**20:7.1f} {rate:8.1f} {speed:6.2f}x {ms:15.1f} {speed1:6.2f}x")
        result["variants"][name] = {"bytes": sizes[name], "clips_per_s": rates[name], "ms_per_item": per_item[name],
                                    "clips_per_s_vs_raw": speed, "ms_per_item_speedup_vs_raw": speed1,
                                    "prepare_seconds": prepare_seconds.get(name)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
