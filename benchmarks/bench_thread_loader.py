"""Worker processes (torch DataLoader) vs threads of one process, at the same number of cores, clips/s.

Issue 15 asks whether a thread-based loader (SPDL's approach: decoding in threads, which works when the
decoder releases the GIL, as PyAV's FFmpeg calls do) beats the process DataLoader at equal cores. Both
loaders here run vidssl's own ``VideoDataset`` (two 16-frame clips per item at a 112² canvas, the
``rho2`` plan of ``bench_dataloader.py``) on the same items and collate them into the same batches:

* **processes**: ``torch.utils.data.DataLoader`` with N workers (vidssl's loader);
* **threads**: N threads of this process calling ``dataset[i]`` through a ``ThreadPoolExecutor``
  (a prefetch of 2 batches per thread), then the same ``collate``;
* **one thread** (for reference): the items decoded one after another in this process.

Rounds interleave the loaders; medians are printed with the ratio threads / processes (> 1: threads win).

    python benchmarks/bench_thread_loader.py                     # generated default demo, N = 2
    python benchmarks/bench_thread_loader.py --data data/demo --workers 4 --items 256
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
    for _ in range(args.repeats):
        rates["processes (DataLoader)"].append(with_processes(dataset, indices, args.workers, args.batch))
        rates["threads"].append(with_threads(dataset, indices, args.workers, args.batch))
        rates["one thread"].append(in_one_thread(dataset, indices, args.batch))
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:24s} {median[name]:8.1f} clips/s  (rounds: {', '.join(f'{x:.0f}' for x in r)})")
    print(f"ratio threads / processes {median['threads'] / median['processes (DataLoader)']:.2f}x")


if __name__ == "__main__":
    main()
