"""Throughput of vidssl's batched device-side augmentation against per-sample torchvision.

Both run in this process on the same uint8 clips (2 views per video, 16 frames, a
128×171 canvas as the workers deliver it, 112² crops) with the BYOL/PySlowFast recipe:
RandomResizedCrop [0.2, 0.766] × [0.75, 1.333], flip, ColorJitter(0.6, 0.6, 0.6, 0.15)
p 0.8, grayscale p 0.2, blur p 0.5, normalise.

* vidssl: ``byol_video_augment(112)`` on the whole batch at once (B×T×H×W×C uint8).
* baseline: ``torchvision.transforms.v2`` applied clip by clip (one parameter draw per
  clip, as a ``tv_tensors.Video``), then stacked, i.e. what a per-sample pipeline does.

Usage:
    python benchmarks/bench_transforms.py [--device cpu] [--videos 8] [--threads 1] [--repeats 7]
    python benchmarks/bench_transforms.py --demo   # also time generate_demo(size="default")
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def torchvision_baseline(crop_size: int):
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(crop_size, scale=(0.2, 0.766), ratio=(0.75, 1.333), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.6, 0.6, 0.6, 0.15)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(13, sigma=(0.1, 2.0))], p=0.5),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.45] * 3, [0.225] * 3),
    ])


def run_baseline(transform, clips: torch.Tensor) -> torch.Tensor:
    """Per-sample: each clip (T×C×H×W uint8 Video) gets its own draw; output B×C×T×h×w."""
    from torchvision import tv_tensors

    videos = clips.permute(0, 1, 4, 2, 3)  # B×T×C×H×W
    out = [transform(tv_tensors.Video(video)) for video in videos]
    return torch.stack(out).permute(0, 2, 1, 3, 4)


def timed_pair(first, second, repeats: int, synchronize) -> tuple[float, float]:
    """Median seconds per call of two functions, measured alternately so that a change in
    the machine's load (shared CPUs) hits both alike."""
    first(), second()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for function, bucket in ((first, times[0]), (second, times[1])):
            synchronize()
            start = time.perf_counter()
            function()
            synchronize()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--videos", type=int, default=8, help="videos per batch (2 views each)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--canvas", type=int, nargs=2, default=(128, 171), metavar=("H", "W"))
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--demo", action="store_true", help="also time generate_demo(size='default')")
    args = parser.parse_args()

    from vidssl.data.transforms import byol_video_augment

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clips_per_batch = 2 * args.videos
    generator = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (clips_per_batch, args.frames, *args.canvas, 3), dtype=torch.uint8,
                          generator=generator).to(device)

    ours = byol_video_augment(args.crop).to(device)
    draw = torch.Generator(device=device).manual_seed(1)
    baseline = torchvision_baseline(args.crop)
    seconds_ours, seconds_base = timed_pair(
        lambda: ours(clips, generator=draw), lambda: run_baseline(baseline, clips), args.repeats, synchronize)

    print(f"device {device}, {torch.get_num_threads()} thread(s), batch {args.videos} videos x 2 views = "
          f"{clips_per_batch} clips of {args.frames}x{args.canvas[0]}x{args.canvas[1]} -> {args.crop}^2")
    print(f"vidssl batched byol_video_augment : {clips_per_batch / seconds_ours:8.1f} clips/s "
          f"({1000 * seconds_ours:.0f} ms/batch)")
    print(f"torchvision v2 per-sample baseline: {clips_per_batch / seconds_base:8.1f} clips/s "
          f"({1000 * seconds_base:.0f} ms/batch)")
    print(f"ratio (vidssl / baseline)         : {seconds_base / seconds_ours:8.2f}x  "
          f"(medians of {args.repeats}, interleaved)")

    if args.demo:
        from vidssl.data.demo import generate_demo

        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            root = generate_demo(f"{folder}/demo", size="default", seed=0)
            elapsed = time.perf_counter() - start
            count = len(list(root.glob("*/*.mp4")))
        print(f"generate_demo(size='default'): {count} clips in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
