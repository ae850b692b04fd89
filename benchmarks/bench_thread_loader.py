"""Worker processes (torch DataLoader) vs threads of one process, at the same number of cores, clips/s.

Issue 15 asks whether a thread-based loader beats the process DataLoader at equal cores. SPDL's approach is
to decode in threads, which works when the decoder releases the GIL, as PyAV's FFmpeg calls do. The same
items (two random 16-frame clips at stride 2 on a 112² canvas, the ``rho2`` plan of
``bench_dataloader.py``) are loaded and collated into the same batches by:

* **processes**: ``torch.utils.data.DataLoader`` with N workers over vidssl's ``VideoDataset``
  (vidssl's loader);
* **threads**: N threads of this process calling ``dataset[i]`` (a dataset copy per thread, 2 batches
  per thread in flight), then the same ``collate``;
* **spdl** (``--spdl``): SPDL's thread pipeline with its own FFmpeg decoder (``pip install spdl``; it needs
  the system FFmpeg libraries);
* **one thread** (for reference): the items decoded one after another in this process.

Rounds interleave the loaders. The medians are printed with the ratios to the processes (> 1: the
alternative wins).

    python benchmarks/bench_thread_loader.py                     # generated default demo, N = 2
    python benchmarks/bench_thread_loader.py --data data/demo --workers 4 --items 256 --spdl
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from bench_dataloader import make_plan
from torch.utils.data import DataLoader

from vidssl.data.datasets import VideoDataset, collate, worker_context
from vidssl.data.index import build_manifest


def with_processes(dataset, indices: list[int], workers: int, batch: int) -> float:
    # vidssl's start method (forkserver): a forked child of a process whose threads have decoded (the
    # threads loader of an earlier round) can wait forever on a lock one of those threads held
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch, num_workers=workers,
                        collate_fn=collate, prefetch_factor=2, multiprocessing_context=worker_context(workers))
    it = iter(loader)
    next(it)  # worker start-up and first decode are not timed
    start, count = time.perf_counter(), 0
    for b in it:
        count += len(b["label"])
    return 2 * count / (time.perf_counter() - start)


def with_threads(dataset, indices: list[int], workers: int, batch: int) -> float:
    """Items decoded by ``workers`` threads with a bounded prefetch (2 batches per thread, as the
    DataLoader's ``prefetch_factor=2``), collated in order in this thread."""
    # one dataset copy (own decoder state) per thread: with one shared VideoDataset, two threads in
    # PyAV's RGB conversion hung (the decoder objects are made for one worker process each)
    local = threading.local()

    def load(index: int):
        if not hasattr(local, "dataset"):
            local.dataset = copy.deepcopy(dataset)
        return local.dataset[index]

    in_flight = 2 * batch * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        queue: deque = deque(pool.submit(load, i) for i in indices[:in_flight])
        upcoming = iter(indices[in_flight:])

        def next_item():
            item = queue.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                queue.append(pool.submit(load, following))
            return item

        collate([next_item() for _ in range(batch)])  # first batch not timed, like the processes' start-up
        start, count = time.perf_counter(), 0
        while len(queue) >= batch:
            count += len(collate([next_item() for _ in range(batch)])["label"])
        return 2 * count / (time.perf_counter() - start)


def with_spdl(dataset, indices: list[int], workers: int, batch: int) -> float:
    """SPDL's thread pipeline and its own FFmpeg decoder (``spdl.io``), the thread-based loader of the issue.

    Per item: two random 16-frame windows (stride 2: a 15 fps filter on 30 fps, a half-rate one in general),
    each demuxed by timestamp and decoded by FFmpeg's filter graph (trim, frame rate, resize to the canvas) (what vidssl's
    plan does, minus its pad/crop logic); ``workers`` decode threads; batches collated to uint8 tensors.
    """
    import spdl.io
    from spdl.pipeline import PipelineBuilder

    frames, stride, canvas = 16, 2, 112
    rng = np.random.default_rng(0)
    jobs = []
    for i in indices:
        record = dataset.records[dataset.items[i][0]]
        fps, duration = float(record.info.fps), float(record.info.duration)
        span = frames * stride / fps
        starts = rng.uniform(0, max(duration - span - (stride + 1) / fps, 0.0), size=2)  # inside the file
        jobs.append((dataset.manifest.resolve(record), fps, starts, record.label))

    def load(job):
        path, fps, starts, label = job
        clips = []
        for start in starts:
            # whole milliseconds: SPDL 0.8 turns a float into a fraction, and a start of 0.00044 s gave a
            # fraction its binding rejects (TypeError in demux_video); one spare frame for the fps filter's phase
            begin = round(float(start), 3)
            window = (begin, round(begin + (frames + 1) * stride / fps, 3))
            desc = spdl.io.get_video_filter_desc(frame_rate=(int(round(fps)), stride), timestamp=window,
                                                 scale_width=canvas, scale_height=canvas, scale_mode=None,
                                                 pix_fmt="rgb24")
            clip = spdl.io.to_numpy(spdl.io.load_video(path, timestamp=window, filter_desc=desc))[:frames]
            if len(clip) != frames:
                raise RuntimeError(f"{path}: {len(clip)} frames from {window}")
            clips.append(torch.from_numpy(clip))
        return clips, label

    def collate_items(items):
        return {"clip_1": torch.stack([c[0] for c, _ in items]), "clip_2": torch.stack([c[1] for c, _ in items]),
                "label": torch.tensor([label for _, label in items])}

    pipeline = (PipelineBuilder().add_source(jobs).pipe(load, concurrency=workers, output_order="input")
                .aggregate(batch, drop_last=True).pipe(collate_items).add_sink(2 * workers).build(num_threads=workers))
    with pipeline.auto_stop():
        iterator = iter(pipeline)
        first = next(iterator)  # start-up and the first batch not timed
        assert first["clip_1"].shape == (batch, frames, canvas, canvas, 3), first["clip_1"].shape
        start, count = time.perf_counter(), 0
        for b in iterator:
            count += len(b["label"])
        return 2 * count / (time.perf_counter() - start)


def in_one_thread(dataset, indices: list[int], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(indices) - batch + 1, batch):
        collate([dataset[j] for j in indices[i:i + batch]])
    return 2 * (len(indices) // batch * batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset root (default: generate the embedded demo)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes = threads (default 2)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--items", type=int, default=128, help="timed items per loader and round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spdl", action="store_true",
                        help="also time SPDL's thread pipeline with its own decoder (pip install spdl; needs the "
                             "system FFmpeg libraries)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    root = args.data
    if root is None:
        from vidssl.data.demo import generate_demo

        root = Path(tempfile.gettempdir()) / "vidssl_bench_demo_default"
        generate_demo(root, size="default", seed=0)
    dataset = VideoDataset(build_manifest(root), make_plan("rho2", 16, 2, 112), split="train", fold=1, seed=0)
    indices = [i % len(dataset) for i in range(args.items + args.batch)]
    print(f"{len(dataset)} videos, {args.workers} workers / threads, batch {args.batch}, "
          f"{args.items} items (2 clips each) x {args.repeats} rounds")
    rates: dict[str, list[float]] = {"processes (DataLoader)": [], "threads": [], "one thread": []}
    if args.spdl:
        rates["spdl (threads, own decoder)"] = []
    for _ in range(args.repeats):
        rates["processes (DataLoader)"].append(with_processes(dataset, indices, args.workers, args.batch))
        rates["threads"].append(with_threads(dataset, indices, args.workers, args.batch))
        rates["one thread"].append(in_one_thread(dataset, indices, args.batch))
        if args.spdl:
            rates["spdl (threads, own decoder)"].append(with_spdl(dataset, indices, args.workers, args.batch))
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:24s} {median[name]:8.1f} clips/s  (rounds: {', '.join(f'{x:.0f}' for x in r)})")
    print(f"ratio threads / processes {median['threads'] / median['processes (DataLoader)']:.2f}x")
    if args.spdl:
        print(f"ratio spdl / processes {median['spdl (threads, own decoder)'] / median['processes (DataLoader)']:.2f}x")


if __name__ == "__main__":
    main()
