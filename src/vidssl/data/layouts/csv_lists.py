"""``csv`` layout: ``ROOT/{train,val,test}.csv`` with lines ``path label`` (PySlowFast / FGKVMemPred
lists; space, tab or comma separated; paths relative to ROOT, or absolute / outside ROOT when the
manifest is built with ``allow_outside_root``, ``vidssl data index --allow-outside-root``)."""

from __future__ import annotations

from pathlib import Path

from vidssl.data.index import SPLIT_NAMES, VideoRecord
from vidssl.data.layouts.common import _read_lines, _warn_missing
from vidssl.errors import DataError


def _parse_path_label(line: str, source: Path, lineno: int) -> tuple[str, int]:
    parts = line.rsplit(",", 1) if "," in line else line.rsplit(None, 1)
    try:
        if len(parts) != 2:
            raise ValueError
        return parts[0].strip(), int(parts[1])
    except ValueError:
        raise DataError(f"{source} line {lineno}: expected 'PATH LABEL' (LABEL an integer), got {line[:80]!r}; fix or remove that line") from None


def read_csv_lists(root: Path):
    """``ROOT/{train,val,test}.csv`` with ``path label`` lines (PySlowFast format)."""
    files = {SPLIT_NAMES[p.stem.lower()]: p for p in root.glob("*.csv") if p.stem.lower() in SPLIT_NAMES}
    if not files:
        raise DataError(f"no train.csv / val.csv / test.csv in {root}; the csv format needs 'path label' lists there")
    entries: dict[str, dict] = {}
    folder_of_label: dict[int, set] = {}
    for split, source in sorted(files.items()):
        for lineno, line in _read_lines(source):
            rel, label = _parse_path_label(line, source, lineno)
            if label < 0:
                raise DataError(f"{source} line {lineno}: negative label {label}; labels are 0-based class indices")
            entry = entries.setdefault(rel, {"label": label, "splits": {}})
            entry["splits"][1] = split
            folder_of_label.setdefault(label, set()).add(Path(rel).parent.name)
    if not entries:
        raise DataError(f"{', '.join(p.name for p in files.values())} in {root} list no videos; add 'path label' lines")
    lookup_missing = [rel for rel in entries if not (root / rel).is_file()]
    if len(lookup_missing) == len(entries):
        raise DataError(f"none of the videos listed in {', '.join(p.name for p in files.values())} exist under {root} "
                        f"(e.g. {next(iter(entries))}); paths must be relative to ROOT or absolute")
    _warn_missing(lookup_missing, "the csv lists")
    num_classes = max(e["label"] for e in entries.values()) + 1
    # Class names: the parent folder when it is the same for every video of a label.
    classes = []
    for k in range(num_classes):
        names = folder_of_label.get(k, set())
        classes.append(next(iter(names)) if len(names) == 1 and next(iter(names)) else f"class_{k}")
    if len(set(classes)) != len(classes):
        classes = [f"class_{k}" for k in range(num_classes)]
    missing = set(lookup_missing)
    records = [VideoRecord(rel, e["label"], classes[e["label"]], e["splits"]) for rel, e in entries.items() if rel not in missing]
    return records, classes, sorted(missing)
