"""Clips/s of the vidssl DataLoader vs a plain-PyTorch loader, in the same process.

Both loaders read the same videos with the same DataLoader settings (workers, batch size,
item order) and deliver the same thing per item: two 16-frame clips (stride 2) at a 112×112
canvas, uint8. They differ in how they get there:

* **vidssl**: ``VideoDataset`` + a 2-view ``ViewsPlan``: one decode of the span that covers both
  clips (seek to the keyframe before it, one decoder thread per worker), only the kept
  frames converted to RGB, resized by swscale at decode time.
* **vidssl decoder, per clip** (for reference): the same decoder, but one decode per clip,
  which isolates what decoding the covering span once is worth.
* **baseline**: what a plain PyTorch dataset usually does: every view opens and decodes the
  file separately from the start with PyAV's default threading, converts every decoded
  frame to a full-size RGB array, then resizes the kept frames with
  ``torch.nn.functional.interpolate`` and centre-crops.

Run (generates the embedded dataset on first use, ~1 min on 2 cores)::

    python benchmarks/bench_dataloader.py                       # default demo, 2 workers
    python benchmarks/bench_dataloader.py --data data/demo --workers 8 --items 512

Plans (``--plan``): ``rho2`` (ρBYOL-like: two anchors ``clip_1``/``clip_2`` at independent random
starts) or ``aligned`` (BraVe-like: a ``narrow`` view and a ``broad`` view aligned to its start,
with twice its stride).

Prints clips/s of each loader (median over interleaved rounds) and their ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vidssl.data.datasets import VideoDataset, collate
from vidssl.data.index import build_manifest
from vidssl.data.sampling import ViewSpec, ViewsPlan


def make_plan(kind: str, frames: int, stride: int, canvas: int) -> ViewsPlan:
    """Two views of ``frames`` frames: two independent random clips (rho2) or a narrow view and a
    broad view (twice the stride) aligned to its start (aligned)."""
    size = (canvas, canvas)
    if kind == "rho2":
        return ViewsPlan([ViewSpec("clip_1", num_frames=frames, stride=stride, canvas=size),
                          ViewSpec("clip_2", num_frames=frames, stride=stride, canvas=size)])
    return ViewsPlan([ViewSpec("narrow", num_frames=frames, stride=stride, canvas=size),
                      ViewSpec("broad", num_frames=frames, stride=2 * stride, canvas=size, align_to="narrow")])


class NaiveTwoClipDataset(Dataset):
    """Plain-PyTorch baseline: each clip decoded separately from the file start, full-size RGB, torch resize."""

    def __init__(self, vidssl_dataset: VideoDataset):
        self.source = vidssl_dataset

    def __len__(self):
        return len(self.source)

    def _clip(self, path: str, indices: np.ndarray, canvas: tuple[int, int]) -> torch.Tensor:
        import av

        wanted = set(int(i) for i in indices)
        last = int(indices.max())
        frames = {}
        with av.open(path) as container:
            for k, frame in enumerate(container.decode(video=0)):
                rgb = frame.to_ndarray(format="rgb24")  # every frame, full size
                if k in wanted:
                    frames[k] = rgb
                if k >= last:
                    break
        keep = [frames.get(int(i), frames[max(frames)]) for i in indices]
        x = torch.from_numpy(np.stack(keep)).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        scale = max(canvas[0] / h, canvas[1] / w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
        top, left = (x.shape[-2] - canvas[0]) // 2, (x.shape[-1] - canvas[1]) // 2
        x = x[..., top : top + canvas[0], left : left + canvas[1]]
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    def __getitem__(self, index):
        ds = self.source
        record = ds.records[index]
        rng = np.random.default_rng((ds.seed, ds.epoch, index, 0))  # same draws as the vidssl loader
        selection = ds.plan.sample(record, rng)
        path = ds.manifest.resolve(record)
        clips = {}
        for name, view in selection.views.items():
            absolute = (view.frame_indices + selection.start_frame) % record.info.num_frames
            rows = [self._clip(path, row, view.spec.canvas) for row in np.atleast_2d(absolute)]
            clips[name] = torch.stack(rows) if view.frame_indices.ndim == 2 else rows[0]
        return {"clips": clips, "label": torch.tensor(record.label)}


class PerViewDataset(NaiveTwoClipDataset):
    """vidssl's decoder (seek, one thread, swscale resize) but one decode per clip: isolates decode-once."""

    def _clip(self, path, indices, canvas):
        from vidssl.data.datasets import fit_canvas

        ds, fps = self.source, self._fps
        first, last = int(indices.min()), int(indices.max())
        clip = ds.decoder.decode(path, first / fps, (last + 1) / fps, short_side=min(canvas),
                                 frame_indices=np.asarray(indices) - first)
        return fit_canvas(clip.frames, canvas)

    def __getitem__(self, index):
        self._fps = self.source.records[index].info.fps
        return super().__getitem__(index)


def measure(dataset, workers: int, batch: int, items: int, clips_per_item: int) -> tuple[float, int]:
    """Clips/s over ``items`` items (after one warm-up batch per worker)."""
    indices = list(range(len(dataset))) * (1 + (items + workers * batch) // max(len(dataset), 1))
    subset = torch.utils.data.Subset(dataset, indices[: items + workers * batch])
    loader = DataLoader(subset, batch_size=batch, num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    it = iter(loader)
    for _ in range(workers or 1):  # warm-up: worker start and first decode
        next(it)
    start, count = time.perf_counter(), 0
    for b in it:
        count += len(b["label"])
    elapsed = time.perf_counter() - start
    return count * clips_per_item / elapsed, count


def _time_items(dataset, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset root (default: generate the embedded demo)")
    parser.add_argument("--size", default="default", help="demo size when generating (default: default)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--items", type=int, default=128, help="items timed per loader and round (2 clips each)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (loaders interleaved; medians reported)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--canvas", type=int, default=112)
    parser.add_argument("--plan", choices=["rho2", "aligned"], default="rho2")
    args = parser.parse_args()

    torch.set_num_threads(1)
    root = args.data
    if root is None:
        from vidssl.data.demo import generate_demo

        root = Path(tempfile.gettempdir()) / f"vidssl_bench_demo_{args.size}"
        t0 = time.perf_counter()
        generate_demo(root, size=args.size, seed=0)
        print(f"demo dataset: {root} ({time.perf_counter() - t0:.1f} s)")
    manifest = build_manifest(root)
    info = manifest.records[0].info
    print(f"videos: {len(manifest)}  ({info.width}x{info.height}, {info.fps:g} fps, {info.video_codec}, "
          f"keyframe every {info.keyframe_interval:.0f} frames)  cpus: {os.cpu_count()}")
    plan = make_plan(args.plan, args.frames, args.stride, args.canvas)
    dataset = VideoDataset(manifest, plan, split="train", fold=1, seed=0)
    views = ", ".join(f"{v.name} stride {v.stride}" for v in plan.views)
    print(f"plan: {args.plan}, 2 clips of {args.frames}x{args.canvas}x{args.canvas} ({views}), "
          f"workers {args.workers}, batch {args.batch}, {args.items} items x {args.repeats} rounds per loader")
    loaders = {
        "vidssl VideoDataset": dataset,
        "plain PyTorch baseline": NaiveTwoClipDataset(dataset),
        "vidssl decoder, per clip": PerViewDataset(dataset),
    }
    # Rounds interleave the loaders so that load from other processes hits them alike; medians are reported.
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, data in loaders.items():
            rates[name].append(measure(data, args.workers, args.batch, args.items, clips_per_item=2)[0])
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:26s} {median[name]:8.1f} clips/s  (median of {', '.join(f'{x:.0f}' for x in r)})")
    print(f"ratio vidssl / baseline             {median['vidssl VideoDataset'] / median['plain PyTorch baseline']:6.2f}x")
    print(f"ratio decode-once / per-clip decode {median['vidssl VideoDataset'] / median['vidssl decoder, per clip']:6.2f}x")
    # The same work in this process without workers: less sensitive to other load on the machine.
    per_item = {}
    for name, data in loaders.items():
        per_item[name] = min(_time_items(data, min(args.items, 64)) for _ in range(args.repeats))
    print("single process, ms per item (2 clips), best of rounds: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in per_item.items()))


if __name__ == "__main__":
    main()
