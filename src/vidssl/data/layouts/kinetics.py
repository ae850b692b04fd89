"""``kinetics`` layout: CSVs with header ``label,youtube_id,time_start,time_end,split``; a video is
``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ROOT (split/class folders or flat)."""

from __future__ import annotations

import csv
from pathlib import Path

from vidssl.data.index import SPLIT_NAMES, VideoRecord
from vidssl.data.layouts.common import _find, _rel, _video_lookup, _warn_missing
from vidssl.errors import DataError

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _kinetics_csvs(root: Path) -> list[Path]:
    out = []
    for p in _find(root, "*.csv"):
        try:
            with p.open(newline="") as f:
                header = next(csv.reader(f), [])
        except OSError:
            continue
        if all(c in header for c in KINETICS_COLUMNS[1:]):
            out.append(p)
    return out


def read_kinetics(root: Path):
    """Kinetics CSVs (``label,youtube_id,time_start,time_end,split``); videos found by name anywhere under ROOT."""
    files = _kinetics_csvs(root)
    if not files:
        raise DataError(f"no Kinetics CSV (header label,youtube_id,time_start,time_end,split) in {root} or one folder below")
    by_stem: dict[str, Path] = {}
    for rel, path in _video_lookup(root).items():
        by_stem.setdefault(path.stem, path)
    rows = []
    for source in files:
        with source.open(newline="") as f:
            reader = csv.DictReader(f)
            for lineno, row in enumerate(reader, 2):
                try:
                    stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{source} line {lineno}: expected youtube_id,time_start,time_end numbers, got "
                                    f"{','.join(str(v) for v in row.values())[:80]!r}; fix or remove that line") from None
                split = (row.get("split") or source.stem).strip().lower()
                rows.append((stem, (row.get("label") or "").strip(), SPLIT_NAMES.get(split, split)))
    names = sorted({label for _, label, _ in rows if label})
    index = {n: i for i, n in enumerate(names)}
    records, missing = [], []
    for stem, label, split in rows:
        path = by_stem.get(stem)
        if path is None:
            missing.append(stem)
            continue
        records.append(VideoRecord(_rel(path, root), index.get(label, -1), label, {1: split}))
    if not records:
        raise DataError(f"none of the {len(rows)} videos listed in the Kinetics CSVs exist under {root} "
                        f"(expected files like {rows[0][0] if rows else 'ID_000000_000010'}.mp4)")
    _warn_missing(missing, "the Kinetics CSVs")
    return records, names, missing
