"""``vidssl data demo|index|check``: write the embedded dataset, index a dataset, inspect one."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter

EPILOG = """examples:
  vidssl data demo --out data/demo                 # the embedded dataset (UCF101 layout)
  vidssl data index data/demo                      # writes data/demo/vidssl_manifest.json
  vidssl data check data/demo --clips 16           # unreadable files, fps, keyframes, decode speed
"""

DEMO_EPILOG = """examples:
  vidssl data demo --out data/demo                 # default size: 1000 clips, < 1 min on 2 cores
  vidssl data demo --out data/tiny --size tiny --seed 1
  vidssl data demo --out data/movies --movie       # scenes of shots, MovieNet-SSeg format
  vidssl data demo --out data/shapes --dataset shapes   # the second action dataset: 800 clips, 96² at 30 fps
"""

INDEX_EPILOG = """examples:
  vidssl data index data/demo                      # auto-detects the layout
  vidssl data index /datasets/hmdb51 --format hmdb51 --out ~/hmdb51_manifest.json   # read-only root
  vidssl data index /datasets/imagenet --format images   # ROOT/train/CLASS/*.JPEG (BEVT's image stream)
"""

CHECK_EPILOG = """examples:
  vidssl data check data/demo
  vidssl data check /datasets/ucf101 --clips 32 --json ucf101_check.json
  vidssl data check ~/hmdb51_manifest.json         # a manifest written with --out
"""

FORMATS = ["auto", "folder", "ucf101", "hmdb51", "csv", "kinetics", "movienet", "movienet_keyframes", "images"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="write the demo dataset, index a dataset, check a dataset",
        description="Datasets: the embedded demo dataset, manifests (index) and health checks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="<subcommand>")

    demo = sub.add_parser("demo", help="write the embedded dataset", epilog=DEMO_EPILOG,
                          description="Render the embedded dataset (real MP4 files with audio, UCF101 layout with 3 splits).",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", required=True, help="folder to write (created; must be empty or an earlier demo)")
    demo.add_argument("--size", default="default", help="tiny | default | large (default: default); movies also dialogue | dialogue_large "
                      "(scenes of recurring shot/reverse-shot setups)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--movie", action="store_true", help="write the 'movie' variant (scenes of shots) instead")
    demo.add_argument("--dataset", choices=("digits", "shapes"), default="digits",  # the keys of vidssl.data.demo.ACTION_DATASETS
                      help="which action dataset: digits (default) or shapes (other objects, motions, 96² at 30 fps: "
                           "a second dataset to check a recipe on)")
    demo.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")

    index = sub.add_parser("index", help="build the manifest of a dataset", epilog=INDEX_EPILOG,
                           description="Read a dataset's layout and split files, probe every video and write the manifest.",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    index.add_argument("root", metavar="ROOT", help="dataset folder")
    index.add_argument("--format", default="auto", choices=FORMATS, help="layout (default: auto-detect)")
    index.add_argument("--out", default=None, help="manifest path (default: ROOT/vidssl_manifest.json)")
    index.add_argument("--workers", type=int, default=None, help="probing threads (default: min(8, CPUs))")
    index.add_argument("--no-probe", action="store_true", help="skip probing (fps/frames are then read when decoding)")
    index.add_argument("--allow-outside-root", action="store_true",
                       help="use listed paths outside ROOT (../.. or absolute paths); refused otherwise")

    check = sub.add_parser("check", help="report unreadable files, audio, fps, keyframes and decode speed",
                           epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Inspect a dataset (ROOT folder or manifest file): unreadable files by path, files "
                                       "without audio, resolution/fps/keyframe statistics, measured decode time per clip. "
                                       "Exits 0 whenever the data could be inspected.")
    check.add_argument("root", metavar="ROOT", help="dataset folder or manifest .json")
    check.add_argument("--format", default="auto", choices=FORMATS, help="layout when ROOT is a folder (default: auto)")
    check.add_argument("--clips", type=int, default=8, help="clips to decode for the timing (default 8)")
    check.add_argument("--json", default=None, help="also write the report as JSON to this file")
    check.add_argument("--workers", type=int, default=None, help="probing and decoding threads")
    check.add_argument("--fast", action="store_true",
                       help="decode only the first second of each file (default: every frame and the whole audio track)")
    from vidssl.commands import data_prepare, data_shots

    data_prepare.register(sub)
    data_shots.register(sub)
    parser.set_defaults(func=run, _data_parser=parser)


def run(args) -> int:
    from vidssl.commands import data_prepare, data_shots

    commands = {"demo": run_demo, "index": run_index, "check": run_check, "prepare": data_prepare.run,
                "shots": data_shots.run}
    if args.data_command is None:
        args._data_parser.print_help()
        return 2
    return commands[args.data_command](args)


def run_demo(args) -> int:
    from vidssl.data import demo
    from vidssl.errors import UserError

    start = time.perf_counter()
    if args.movie and args.dataset != "digits":
        raise UserError("--movie and --dataset shapes do not go together: the movie variant has its own shots")
    variant = "movies" if args.movie else demo.ACTION_DATASETS[args.dataset]
    root = demo.generate_embedded(variant, args.out, size=args.size, seed=args.seed, workers=args.workers)
    what = "movie demo" if args.movie else f"{args.dataset} demo"
    print(f"wrote {what} dataset ({args.size}, seed {args.seed}) to {root} in {time.perf_counter() - start:.1f} s")
    if not args.movie:
        print(f"next: vidssl data index {root}")
    return 0


_BEATS: dict = {}


def _progress(done: int, total: int, what: str = "probing") -> None:
    if sys.stderr.isatty():
        if done % 50 == 0 or done == total:
            print(f"\r{what} {done}/{total}", end="\n" if done == total else "", file=sys.stderr)
        return
    from vidssl.progress import Heartbeat  # not a terminal: a plain line every ~30 s

    beat = _BEATS.setdefault((what, total), Heartbeat(what, total))
    beat.update(done)


def run_index(args) -> int:
    from vidssl.data.index import MANIFEST_NAME, build_manifest

    start = time.perf_counter()
    manifest = build_manifest(args.root, format=args.format, probe=not args.no_probe, workers=args.workers,
                              out=args.out, progress=_progress, allow_outside_root=args.allow_outside_root)
    out = getattr(manifest, "saved_to", None)
    bad = manifest.unreadable()
    where = f"-> {out}" if out else (f"(NOT written: {os.path.join(manifest.root, MANIFEST_NAME)} is not writable; "
                                     "pass --out FILE to keep the manifest)")
    print(f"indexed {len(manifest)} {manifest.record_kind}s ({manifest.format}, {manifest.num_classes} classes, "
          f"folds {manifest.folds or '-'}) in {time.perf_counter() - start:.1f} s {where}")
    if manifest.missing:
        print(f"{len(manifest.missing)} listed videos are missing on disk (first: {manifest.missing[0]})")
    if bad:
        print(f"{len(bad)} unreadable (see `vidssl data check {args.root}`)")
    return 0


def _stats(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"min {min(values):.3g}  median {statistics.median(values):.3g}  max {max(values):.3g}"


def _common(counter: Counter, limit: int = 4) -> str:
    return ", ".join(f"{k} ({n})" for k, n in counter.most_common(limit)) + (" ..." if len(counter) > limit else "")


def _load_for_check(args):
    from vidssl.data.index import build_manifest, load_manifest

    if os.path.isfile(args.root):
        manifest = load_manifest(args.root)
        stale = [r for r in manifest.records if r.info is None and r.error is None]
        if stale:  # indexed with --no-probe: probe now, without writing
            from vidssl.data.index import probe_records

            probe_records(manifest, args.root, args.workers, _progress)
        return manifest
    # an inspection: paths outside ROOT are reported, not refused, and no manifest is written (a
    # manifest is what training trusts: `vidssl data index` writes it)
    return build_manifest(args.root, format=args.format, workers=args.workers, progress=_progress, write=False,
                          allow_outside_root=True)


def time_clips(manifest, num_clips: int, seed: int = 0) -> tuple[list[float], dict[str, str]]:
    """Decode ``num_clips`` random clips (16 frames, stride 2, canvas 112²; images of a still-image
    manifest: one frame at 112²) with the dataset path.

    Runs in this process with one torch thread, like one DataLoader worker. Returns seconds
    per clip and the files that failed (path -> reason).
    """
    import numpy as np

    from vidssl.data.datasets import VideoDataset
    from vidssl.data.sampling import RandomClipPlan, ViewSpec
    from vidssl.errors import DataError

    readable = [r for r in manifest.records if r.error is None]
    if not readable or num_clips <= 0:
        return [], {}
    view = ViewSpec("clip", kind="image", canvas=(112, 112)) if manifest.media != "video" else \
        ViewSpec("clip", num_frames=16, stride=2, canvas=(112, 112))
    plan = RandomClipPlan(view)
    dataset = VideoDataset(manifest, plan, seed=seed, max_retries=0)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(num_clips, len(dataset)), replace=False)
    import torch

    times = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as inside a DataLoader worker (more threads were 3x slower here)
    try:
        try:
            dataset[int(picks[0])]  # warm-up (first file open, swscale set-up); not timed
        except DataError:
            pass
        for i in picks:
            start = time.perf_counter()
            try:
                dataset[int(i)]
            except DataError:
                pass
            else:
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return times, dataset.failures()


def run_check(args) -> int:
    from vidssl.data.check import AUDIO_UNDECODABLE, check_files

    manifest = _load_for_check(args)
    records = manifest.records
    infos = [r.info for r in records if r.info is not None]
    at_probe = {manifest.resolve(r): r.error for r in records if r.error is not None}
    readable = [(manifest.resolve(r), r.info) for r in records if r.error is None and r.info is not None]
    checks = check_files(readable, fast=args.fast, workers=args.workers,
                         progress=lambda d, t: _progress(d, t, "decoding"), media=manifest.media)
    broken = {c.path: c.error for c in checks if c.error is not None}
    times, failed = time_clips(manifest, args.clips)
    for path, reason in failed.items():  # a clip the dataset could not cut (rare once the whole file decodes)
        if path not in at_probe:
            broken.setdefault(path, reason)
    unreadable = {**at_probe, **broken}
    outside = manifest.outside_root()
    ok = len(records) - len(unreadable)
    no_audio = [manifest.resolve(r) for r in records if r.info is not None and not r.info.has_audio]
    audio_problems = {c.path: c.audio for c in checks if c.audio is not None and c.path not in broken}
    undecodable_audio = [p for p, a in audio_problems.items() if a == AUDIO_UNDECODABLE]
    lying = [manifest.resolve(r) for r in records if r.info and r.info.header_frames
             and r.info.frames_counted and abs(r.info.header_frames - r.info.num_frames) > 1]
    report = {
        "root": manifest.root,
        "format": manifest.format,
        "classes": manifest.num_classes,
        "folds": manifest.folds,
        "videos": len(records),
        # every indexed file is in exactly one of: ok, unreadable_at_probe, broken (so the counts add up)
        "counts": {"indexed": len(records), "ok": ok, "unreadable_at_probe": len(at_probe), "broken": len(broken),
                   "missing_on_disk": len(manifest.missing)},
        "readable": ok,
        "unreadable": unreadable,
        "broken": broken,
        "missing_on_disk": manifest.missing,
        "outside_root": outside,
        "without_audio": no_audio,
        "audio_problems": audio_problems,
        "audio_undecodable": undecodable_audio,
        "header_frame_count_wrong": lying,
        "resolution": dict(Counter(f"{i.width}x{i.height}" for i in infos)),
        "fps": dict(Counter(f"{i.fps:g}" for i in infos)),
        "video_codec": dict(Counter(i.video_codec for i in infos)),
        "audio_codec": dict(Counter(i.audio_codec for i in infos if i.audio_codec)),
        "duration_s": [i.duration for i in infos],
        "keyframe_interval_frames": [i.keyframe_interval for i in infos if i.keyframe_interval],
        "decode_s_per_clip": times,
        "decoded": ("each image whole" if manifest.stills else "each folder's images" if manifest.frame_folders
                    else "first second of each file" if args.fast
                    else "every frame and the whole audio track of each file"),
    }
    print(f"dataset     {manifest.root}  ({manifest.format}, {manifest.num_classes} classes, folds {manifest.folds or '-'})")
    what = f"{manifest.record_kind}s"
    print(f"{what:<12}{len(records)} indexed = {ok} OK + {len(unreadable)} unreadable ({len(at_probe)} at probe, "
          f"{len(broken)} break while decoding{' the first second' if args.fast and manifest.media == 'video' else ''}); "
          f"{len(manifest.missing)} listed but missing on disk")
    if unreadable:
        print("unreadable:")
        for path, reason in sorted(unreadable.items()):
            print(f"  {path}: {reason}")
    if manifest.missing:
        print(f"missing     first: {', '.join(manifest.missing[:5])}")
    if outside:
        print(f"outside     {len(outside)} listed paths lie outside ROOT (refused unless indexed with "
              f"--allow-outside-root), e.g. {', '.join(outside[:3])}")
    if manifest.media != "video":  # images, folders of keyframes: no audio, frame rate or keyframes to report
        if infos:
            print(f"resolution  {_common(Counter(f'{i.width}x{i.height}' for i in infos))}")
            print(f"formats     {_common(Counter(i.video_codec for i in infos))}")
    else:
        _print_video_facts(report, infos, no_audio, audio_problems, undecodable_audio, lying)
    if times:
        ms = [1000 * t for t in times]
        still = manifest.media != "video"
        what = "images" if still else "clips of 16 frames (stride 2)"
        print(f"decode      {len(times)} {what} at 112x112, one thread: "
              f"median {statistics.median(ms):.1f} ms/{'image' if still else 'clip'}, "
              f"mean {statistics.mean(ms):.1f} ms (~{1000 / statistics.mean(ms):.0f} "
              f"{'images' if still else 'clips'}/s per worker)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"report      {args.json}")
    return 0


def _print_video_facts(report: dict, infos: list, no_audio: list, audio_problems: dict, undecodable_audio: list,
                       lying: list) -> None:
    """The audio, frame-rate, codec, duration and keyframe lines of ``vidssl data check`` (videos only)."""
    from vidssl.data.check import AUDIO_UNDECODABLE

    print(f"audio       {len(infos) - len(no_audio)} with a track, {len(no_audio)} without, "
          f"{len(undecodable_audio)} {AUDIO_UNDECODABLE}, {len(audio_problems) - len(undecodable_audio)} cut short"
          + ("" if not audio_problems else "  (such clips are marked invalid in training, never fed as silence)"))
    for path, problem in sorted(audio_problems.items())[:10]:
        print(f"  {path}: {problem}")
    print(f"no audio    {len(no_audio)}" + (f"  (e.g. {', '.join(no_audio[:3])})" if no_audio else ""))
    if infos:
        print(f"resolution  {_common(Counter(f'{i.width}x{i.height}' for i in infos))}")
        print(f"fps         {_common(Counter(f'{i.fps:g}' for i in infos))}")
        print(f"codecs      video {_common(Counter(i.video_codec for i in infos))}; "
              f"audio {_common(Counter(i.audio_codec or 'none' for i in infos))}")
        print(f"duration s  {_stats(i.duration for i in infos)}")
        print(f"keyframes   every {_stats(report['keyframe_interval_frames'])} frames"
              + ("  (long intervals make random access slow; re-encode with -g 25)"
                 if report["keyframe_interval_frames"] and statistics.median(report["keyframe_interval_frames"]) > 100 else ""))
        if lying:
            print(f"headers     {len(lying)} files claim a wrong frame count (counted instead), e.g. {lying[0]}")
