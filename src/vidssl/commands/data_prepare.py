"""``vidssl data prepare SRC DST``: re-encode a dataset at the training scale with short keyframe intervals."""

from __future__ import annotations

import argparse
import os
import statistics
import time

EPILOG = """examples:
  vidssl data prepare /data/ucf101 /fast/ucf101_128 --short-side 128 --gop-seconds 1
  vidssl pretrain --preset fgkvmem_kvmem_r3d18_ucf101 data.root=/fast/ucf101_128   # trains on the prepared copy
  vidssl data prepare ~/hmdb51_manifest.json /fast/hmdb51_128      # a manifest written by `data index --out`

Run it again with the same arguments to resume: files already written are kept. Every source
frame is kept (frame indices in annotations stay valid); audio is re-encoded to AAC. The prepared
copy's manifest (DST/vidssl_manifest.json) keeps the labels and splits; do not re-index DST from
the source's split files, which name the original file names.
"""


def register(sub) -> None:
    """Adds ``prepare`` to the ``vidssl data`` subcommands."""
    parser = sub.add_parser(
        "prepare", help="re-encode a dataset at the training scale with short keyframe intervals (faster loading)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-encode every video of SRC (a dataset folder or a manifest) into DST: H.264 scaled to "
                    "--short-side, a keyframe every --gop-seconds, audio kept. Parallel over files, resumable, "
                    "writes DST/vidssl_manifest.json, and reports the space and the decode speed before and after.")
    parser.add_argument("src", metavar="SRC", help="dataset folder or manifest .json")
    parser.add_argument("dst", metavar="DST", help="output folder (new, empty, or an earlier prepare to resume)")
    parser.add_argument("--short-side", type=int, default=128,
                        help="short side in pixels (default 128; sources already smaller are not up-scaled)")
    parser.add_argument("--keep-size", action="store_true", help="keep the source size (only re-encode)")
    parser.add_argument("--gop-seconds", type=float, default=1.0, help="seconds between keyframes (default 1)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality, lower is better and larger (default 23)")
    parser.add_argument("--preset", default="veryfast", help="libx264 speed preset (default veryfast)")
    parser.add_argument("--format", default="auto", help="layout when SRC is a folder without a manifest (default: auto)")
    parser.add_argument("--workers", type=int, default=None, help="parallel files (default: all CPUs)")
    parser.add_argument("--clips", type=int, default=16,
                        help="random clips decoded before and after to report the speed-up (default 16; 0: skip)")


def _source_manifest(src: str, fmt: str):
    from vidssl.commands.data import _progress
    from vidssl.data.index import MANIFEST_NAME, build_manifest, load_manifest
    from vidssl.errors import DataError

    if os.path.isfile(src) or os.path.isfile(os.path.join(src, MANIFEST_NAME)):
        manifest = load_manifest(src)
    elif os.path.isdir(src):
        manifest = build_manifest(src, format=fmt, write=False, progress=_progress)
    else:
        raise DataError(f"SRC {src} does not exist (give a dataset folder or a manifest .json)")
    if not manifest.records:
        raise DataError(f"SRC {src} holds no videos")
    if manifest.media != "video":
        raise DataError(f"SRC {src} holds {'still images' if manifest.stills else 'folders of keyframes'} "
                        f"(format={manifest.format}): there are no videos to re-encode; train on the images as they are")
    return manifest


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _speed(manifest, clips: int) -> float | None:
    """Mean seconds per 16-frame clip (one thread, the dataset path) or None."""
    from vidssl.commands.data import time_clips

    times, _ = time_clips(manifest, clips)
    return statistics.mean(times) if times else None


def run(args) -> int:
    from vidssl.data.index import load_manifest
    from vidssl.data.prepare import PrepareOptions, prepare_dataset
    from vidssl.progress import progress_bar

    options = PrepareOptions(short_side=None if args.keep_size else args.short_side, gop_seconds=args.gop_seconds,
                             crf=args.crf, preset=args.preset)
    source = _source_manifest(args.src, args.format)
    start = time.perf_counter()
    with progress_bar(len(source.records), "preparing", enabled=True) as bar:
        report = prepare_dataset(source, args.dst, options, workers=args.workers, progress=bar.advance)
    elapsed = time.perf_counter() - start
    reused = sum(f.reused for f in report.files)
    written = len(report.files) - reused - len(report.failed)
    size = "the source size" if options.short_side is None else f"short side {options.short_side}"
    print(f"prepared {written} videos ({size}, keyframe every {options.gop_seconds:g} s, CRF {options.crf}) in "
          f"{elapsed:.1f} s; {reused} already there from an earlier run; {len(report.failed)} failed")
    for failed in report.failed[:10]:
        print(f"  failed {failed.source}: {failed.error}")
    truncated = [f for f in report.files if f.truncated]
    if truncated:
        print(f"{len(truncated)} sources ended early on a stream error (what decoded was kept), e.g. {truncated[0].source}")
    changed = [f for f in report.files if f.error is None and f.source_frames is not None and f.frames != f.source_frames]
    if changed:
        print(f"{len(changed)} prepared files have a frame count other than the source's (e.g. {changed[0].output}: "
              f"{changed[0].frames} vs {changed[0].source_frames}); frame-indexed annotations of those may be off")
    if report.bytes_in:
        print(f"space       {_mib(report.bytes_in)} -> {_mib(report.bytes_out)} "
              f"({100 * report.bytes_out / report.bytes_in:.0f} % of the source)")
    if args.clips > 0:
        before = _speed(source, args.clips)
        after = _speed(load_manifest(report.manifest), args.clips)
        if before and after:
            print(f"decode      {args.clips} random clips of 16 frames (stride 2) at 112x112, one thread: "
                  f"{1000 * before:.1f} -> {1000 * after:.1f} ms/clip (speed-up {before / after:.2f}x)")
    print(f"manifest    {report.manifest}\nnext: vidssl pretrain --preset PRESET data.root={os.path.dirname(report.manifest)}")
    return 0
