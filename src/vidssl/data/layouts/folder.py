"""``folder`` layout: ``ROOT/SPLIT/CLASS/*.mp4`` (SPLIT e.g. train/val/test), or ``ROOT/CLASS/*.mp4`` (no split)."""

from __future__ import annotations

from pathlib import Path

from vidssl.data.index import SPLIT_NAMES, VIDEO_EXTENSIONS, VideoRecord
from vidssl.data.layouts.common import _rel, _videos_in
from vidssl.errors import DataError


def read_folder(root: Path):
    """``ROOT/SPLIT/CLASS/*`` (SPLIT among train/val/test...) or ``ROOT/CLASS/*``."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    records: list[VideoRecord] = []
    if split_dirs:
        items = []
        for split_dir in split_dirs:
            for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
                for video in _videos_in(class_dir):
                    items.append((video, class_dir.name, SPLIT_NAMES[split_dir.name.lower()]))
    else:
        items = [(video, class_dir.name, None) for class_dir in subdirs for video in _videos_in(class_dir)]
    if not items:
        raise DataError(
            f"{root} has no videos in class folders (looked for ROOT/SPLIT/CLASS/*.mp4 and ROOT/CLASS/*.mp4 "
            f"with extensions {', '.join(VIDEO_EXTENSIONS[:4])}, ...); point ROOT at the dataset folder"
        )
    classes = sorted({c for _, c, _ in items})
    index = {c: i for i, c in enumerate(classes)}
    for video, cls, split in items:
        records.append(VideoRecord(_rel(video, root), index[cls], cls, {1: split} if split else {}))
    return records, classes, []
