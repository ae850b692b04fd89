"""``ucf101`` layout: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` (N = 1..3), in ROOT or
one folder below (e.g. ``ucfTrainTestlist/``); videos under ROOT (or ``ROOT/UCF-101``)."""

from __future__ import annotations

from pathlib import Path

from vidssl.data.index import VideoRecord
from vidssl.data.layouts.common import _find, _locate, _read_lines, _rel, _warn_missing
from vidssl.errors import DataError


def read_ucf101(root: Path):
    """UCF101 official lists: ``classInd.txt``, ``trainlist0N.txt`` (``CLASS/FILE LABEL``), ``testlist0N.txt``."""
    class_files = _find(root, "classInd.txt")
    if not class_files:
        raise DataError(f"no classInd.txt in {root} or one folder below; the ucf101 format needs the official split files")
    class_file = class_files[0]
    classes: dict[int, str] = {}
    for lineno, line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{class_file} line {lineno}: expected 'INDEX CLASSNAME', got {line[:80]!r}; fix or remove that line")
        classes[int(parts[0])] = parts[1]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise DataError(f"{class_file}: class indices must be 1..{len(classes)} without gaps")
    names = [classes[i] for i in range(1, len(classes) + 1)]
    by_name = {n.lower(): i for i, n in enumerate(names)}
    split_dir = class_file.parent
    entries: dict[str, dict] = {}
    folds_found = []
    for fold in range(1, 10):
        for split, stem in (("train", "trainlist"), ("test", "testlist")):
            source = split_dir / f"{stem}{fold:02d}.txt"
            if not source.is_file():
                continue
            folds_found.append(fold)
            for lineno, line in _read_lines(source):
                parts = line.split()
                if len(parts) not in (1, 2) or "/" not in parts[0] or (len(parts) == 2 and not parts[1].isdigit()):
                    raise DataError(f"{source} line {lineno}: expected 'CLASS/FILE' or 'CLASS/FILE LABEL', got {line[:80]!r}; "
                                    "fix or remove that line")
                rel = parts[0]
                cls = rel.split("/")[0]
                if cls.lower() not in by_name:
                    raise DataError(f"{source} line {lineno}: class {cls!r} is not in {class_file.name}")
                label = by_name[cls.lower()]
                if len(parts) == 2 and int(parts[1]) - 1 != label:
                    raise DataError(f"{source} line {lineno}: label {parts[1]} disagrees with {class_file.name} "
                                    f"({cls} is {label + 1}); fix the list or classInd.txt")
                entry = entries.setdefault(rel, {"label": label, "splits": {}})
                entry["splits"][fold] = split
    if not entries:
        raise DataError(f"no videos in trainlist0N.txt / testlist0N.txt next to {class_file}; the ucf101 format needs them")
    listed = list(entries)
    candidates = [root, root / "UCF-101", root / "UCF101", root / "videos", split_dir.parent]
    folder, missing = _locate(listed, root, candidates, split_dir / "trainlist01.txt")
    _warn_missing(missing, "the UCF101 lists")
    miss = set(missing)
    records = [VideoRecord(_rel(folder / rel, root), e["label"], names[e["label"]], e["splits"])
               for rel, e in entries.items() if rel not in miss]
    return records, names, sorted(miss)
