"""``vidssl data shots VIDEO_OR_DIR --out DIR``: shots and keyframes of raw movies, in the MovieNet-SSeg layout.

Per movie (in parallel, resumable): PySceneDetect shots (:mod:`vidssl.data.shots`), three keyframes per
shot, the ``shot_movie318`` frame table and ``shots/<vid>.json``; then, over every movie in DIR, the
annotation files ``anno/anno.<split>.ndjson`` (one line per shot, ``boundary_label`` -1: unknown),
``anno/fps.json``, ``anno/vid2idx.json`` and ``videos/<vid>.<ext>`` (a link to the movie). The result is
read by ``vidssl pretrain`` (format ``movienet``), ``vidssl eval scenes`` and ``vidssl segment``.
The format is described in docs/bassl.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EPILOG = """examples:
  vidssl data shots movies/ --out data/my_movies                 # every video in movies/, all CPUs
  vidssl data shots film.mkv --out data/my_movies --detector content --threshold 27
  vidssl data shots movies/ --out data/my_movies --min-shot-frames 8 --workers 2
"""


def register(sub) -> None:
    shots = sub.add_parser("shots", help="detect shots (PySceneDetect) and write keyframes in the MovieNet-SSeg layout",
                           description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    shots.add_argument("source", metavar="VIDEO_OR_DIR", help="a video file, or a folder searched for videos")
    shots.add_argument("--out", required=True, help="output folder (MovieNet-SSeg layout; re-running resumes)")
    shots.add_argument("--detector", choices=["adaptive", "content"], default="adaptive",
                       help="PySceneDetect detector (default adaptive)")
    shots.add_argument("--threshold", type=float, default=None,
                       help="detector threshold (default: PySceneDetect's; adaptive 3.0, content 27)")
    shots.add_argument("--min-shot-frames", type=int, default=15, help="shortest shot in frames (default 15)")
    shots.add_argument("--min-content-val", type=float, default=15.0,
                       help="adaptive: smallest content change that can be a cut (default 15)")
    shots.add_argument("--split", default="pretrain", choices=["pretrain", "train", "val", "test"],
                       help="annotation file the shots go to (default pretrain: anno/anno.pretrain.ndjson)")
    shots.add_argument("--workers", type=int, default=None, help="movies processed at once (default: CPUs, at most 8)")
    shots.add_argument("--quiet", action="store_true", help="no progress bar")


def find_videos(source: str | os.PathLike) -> list[Path]:
    from vidssl.data.index import VIDEO_EXTENSIONS
    from vidssl.errors import DataError

    source = Path(source).expanduser()
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source} does not exist; give a video file or a folder of videos")
    videos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not videos:
        raise DataError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {source}")
    return videos


def _is_done(out: Path, vid: str, video: Path, detector: dict) -> bool:
    marker = out / "shots" / f"{vid}.json"
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    stat = video.resolve().stat()
    return (record.get("size"), record.get("mtime"), record.get("detector")) == (stat.st_size, stat.st_mtime, detector)


def _work(job):
    from vidssl.data.shots import process_movie
    from vidssl.errors import VideoDecodeError

    video, out, cfg, vid = job
    try:
        process_movie(video, out, cfg, vid)
        return vid, None
    except VideoDecodeError as exc:
        return vid, f"{exc.path}: {exc.reason}"


def write_annotations(out: str | os.PathLike, split: str = "pretrain") -> dict[str, int]:
    """``anno/anno.<split>.ndjson``, ``anno/fps.json``, ``anno/vid2idx.json`` and ``videos/`` links from every
    ``shots/<vid>.json`` in ``out``; returns shots per movie."""
    from vidssl.io import atomic_write

    out = Path(out)
    records = [json.loads(p.read_text()) for p in sorted((out / "shots").glob("*.json"))]
    lines, fps, counts = [], {}, {}
    for record in records:
        vid, n = record["video_id"], len(record["shots"])
        counts[vid] = n
        fps[vid] = record["fps"]
        lines += [json.dumps({"video_id": vid, "shot_id": f"{i:04d}", "num_shot": n, "boundary_label": -1}) + "\n"
                  for i in range(n)]
        link = out / "videos" / f"{vid}{Path(record['source']).suffix.lower()}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            try:
                link.symlink_to(record["source"])
            except OSError:  # no symlinks here (some filesystems): the movie is then found via shots/<vid>.json
                pass
    anno = out / "anno"
    anno.mkdir(parents=True, exist_ok=True)
    text = "".join(lines)
    atomic_write(anno / f"anno.{split}.ndjson", lambda tmp: tmp.write_text(text), len(text), "annotations")
    atomic_write(anno / "fps.json", lambda tmp: tmp.write_text(json.dumps(fps, indent=1)), 0, "frame rates")
    vid2idx = json.dumps({vid: i for i, vid in enumerate(sorted(counts))}, indent=1)
    atomic_write(anno / "vid2idx.json", lambda tmp: tmp.write_text(vid2idx), 0, "vid2idx")
    return counts


def run(args) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import asdict

    from vidssl.data.shots import ShotDetectionConfig, movie_id_for
    from vidssl.errors import DataError
    from vidssl.progress import progress_bar

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be >= 1, got {args.workers}")
    cfg = ShotDetectionConfig(args.detector, args.threshold, args.min_shot_frames, args.min_content_val)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    videos = find_videos(args.source)
    ids: dict[str, Path] = {}
    for video in videos:
        vid = movie_id_for(video)
        if vid in ids:
            raise DataError(f"{video} and {ids[vid]} would both be movie '{vid}'; rename one of them")
        ids[vid] = video
    todo = [(str(v), str(out), cfg, vid) for vid, v in ids.items() if not _is_done(out, vid, v, asdict(cfg))]
    if len(todo) < len(ids):
        print(f"{len(ids) - len(todo)} of {len(ids)} movies already done in {out} (resuming)")
    failed = []
    workers = min(args.workers or min(8, os.cpu_count() or 1), max(1, len(todo)))
    with progress_bar(len(todo), "shots", not args.quiet) as bar:
        if workers == 1:
            results = map(_work, todo)
        else:
            from vidssl.data.datasets import worker_context
            import multiprocessing

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(worker_context(workers)))
            results = pool.map(_work, todo)
        for vid, error in results:
            bar.advance(1)
            if error:
                failed.append(error)
                print(f"skipped unreadable movie: {error}", file=sys.stderr)
        if workers > 1:
            pool.shutdown()
    counts = write_annotations(out, args.split)
    print(f"{len(counts)} movies, {sum(counts.values())} shots in {out} (anno/anno.{args.split}.ndjson, "
          f"240P_frames/, scene318/shot_movie318/)" + (f"; {len(failed)} unreadable movies skipped" if failed else ""))
    return 1 if failed and not counts else 0
