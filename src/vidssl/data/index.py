"""Index a dataset once: records (path, label, splits, probed metadata) in a JSON manifest.

Layouts read (``format=``):

* ``folder``: ``ROOT/SPLIT/CLASS/*.mp4`` (SPLIT e.g. train/val/test), or ``ROOT/CLASS/*.mp4``
  (no split).
* ``csv``: ``ROOT/{train,val,test}.csv`` with lines ``path label`` (PySlowFast / FGKVMemPred
  lists; space, tab or comma separated; paths relative to ROOT or absolute).
* ``ucf101``: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` (N = 1..3), in ROOT or
  one folder below (e.g. ``ucfTrainTestlist/``); videos under ROOT (or ``ROOT/UCF-101``).
* ``hmdb51``: ``<class>_test_splitN.txt`` (lines ``video 1|2|0``: 1 = train, 2 = test,
  0 = unused), in ROOT or one folder below; videos in ``<class>/`` folders.
* ``kinetics``: CSVs with header ``label,youtube_id,time_start,time_end,split``; a video is
  ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ROOT (split/class folders or flat).

:func:`build_manifest` detects the layout, probes every video in parallel (reusing probes
of unchanged files from an earlier manifest) and writes ``ROOT/vidssl_manifest.json``.
Mistakes the user can fix raise :class:`~vidssl.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from vidssl.data.decode import VideoInfo
from vidssl.errors import DataError, VideoDecodeError

__all__ = [
    "VideoRecord",
    "Manifest",
    "build_manifest",
    "load_manifest",
    "probe_records",
    "detect_format",
    "READERS",
    "VIDEO_EXTENSIONS",
    "MANIFEST_NAME",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "vidssl_manifest.json"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
               "validation": "val", "test": "test", "testing": "test"}


@dataclass
class VideoRecord:
    """One video of a dataset.

    Attributes:
        path: relative to the manifest root (or absolute).
        label: class index (-1 when unknown, e.g. an unlabelled test list).
        label_name: class name ("" when unknown).
        splits: fold -> "train" | "val" | "test" | "unused". One-split layouts use fold 1.
        info: probed metadata, None when not probed or unreadable.
        error: why probing failed (None when it did not).
        size, mtime: of the file when probed (to reuse the probe when unchanged).
    """

    path: str
    label: int = -1
    label_name: str = ""
    splits: dict[int, str] = field(default_factory=dict)
    info: VideoInfo | None = None
    error: str | None = None
    size: int | None = None
    mtime: float | None = None

    def to_dict(self) -> dict:
        return {
            "path": self.path, "label": self.label, "label_name": self.label_name,
            "splits": {str(k): v for k, v in self.splits.items()},
            "info": self.info.to_dict() if self.info else None,
            "error": self.error, "size": self.size, "mtime": self.mtime,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "VideoRecord":
        return cls(
            path=data["path"], label=int(data.get("label", -1)), label_name=data.get("label_name", ""),
            splits={int(k): v for k, v in (data.get("splits") or {}).items()},
            info=VideoInfo.from_dict(data["info"]) if data.get("info") else None,
            error=data.get("error"), size=data.get("size"), mtime=data.get("mtime"),
        )


@dataclass
class Manifest:
    """Records + class names + the root their relative paths start from."""

    root: str
    class_names: list[str]
    records: list[VideoRecord]
    format: str = ""
    missing: list[str] = field(default_factory=list)  # listed in a split file but not on disk

    def __len__(self) -> int:
        return len(self.records)

    def resolve(self, record: VideoRecord) -> str:
        """Absolute path of a record's file."""
        return record.path if os.path.isabs(record.path) else os.path.join(self.root, record.path)

    @property
    def folds(self) -> list[int]:
        return sorted({f for r in self.records for f in r.splits})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def unreadable(self) -> list[VideoRecord]:
        return [r for r in self.records if r.error is not None]

    def subset(self, split: str | None = None, fold: int = 1) -> "Manifest":
        """Records of ``split`` ("train"/"val"/"test") in ``fold``; ``split=None`` keeps all."""
        if split is None:
            return replace(self, records=list(self.records))
        split = SPLIT_NAMES.get(split, split)
        if self.folds and fold not in self.folds:
            raise DataError(f"fold {fold} is not in this dataset (it has folds {self.folds})")
        chosen = [r for r in self.records if r.splits.get(fold) == split]
        if not chosen:
            present = sorted({s for r in self.records for s in r.splits.values()})
            raise DataError(
                f"no '{split}' videos in fold {fold} of {self.root} (splits present: {present or 'none'}); "
                "use split=None for all videos or index the dataset with its split files"
            )
        return replace(self, records=chosen)

    def to_dict(self) -> dict:
        return {"version": 1, "root": self.root, "format": self.format, "class_names": self.class_names,
                "missing": self.missing, "records": [r.to_dict() for r in self.records]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (tmp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            records = [VideoRecord.from_dict(r) for r in data["records"]]
            root = data["root"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"manifest {path} is unreadable ({exc}); rebuild it with `vidssl data index ROOT`") from None
        if not os.path.isdir(root) and path.name == MANIFEST_NAME:
            root = str(path.parent.resolve())  # the dataset folder was moved together with its manifest
        return cls(root=root, class_names=list(data.get("class_names", [])), records=records,
                   format=data.get("format", ""), missing=list(data.get("missing", [])))


# ---------------------------------------------------------------------------------------------
# helpers


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_video(p))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; check the path")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is a file, not a folder; give the folder that holds the videos")
    return root.resolve()


def _find(root: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ROOT or one folder below (where split files usually live)."""
    found = sorted(root.glob(pattern))
    if not found:
        found = sorted(p for p in root.glob(f"*/{pattern}") if not p.parent.name.startswith("."))
    return found


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _video_lookup(root: Path) -> dict[str, Path]:
    """Every video under ROOT by relative path (posix)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                p = Path(dirpath) / name
                out[_rel(p, root)] = p
    return out


def _locate(listed: list[str], root: Path, candidates: list[Path], source: Path) -> tuple[Path, list[str]]:
    """Pick the video folder (among ``candidates``) where most listed relative paths exist."""
    if not listed:
        raise DataError(f"{source.name} (and the other split files next to it) list no videos; fill them in or pick another --format")
    best, best_hits = None, -1
    sample = listed[:200]
    for folder in candidates:
        if folder.is_dir():
            hits = sum((folder / rel).is_file() for rel in sample)
            if hits > best_hits:
                best, best_hits = folder, hits
    if best is None or best_hits == 0:
        raise DataError(
            f"none of the videos listed in {source.name} (e.g. {listed[0]}) exist under {root}; "
            "point ROOT at the folder that holds the class folders"
        )
    missing = [rel for rel in listed if not (best / rel).is_file()]
    return best, missing


def _warn_missing(missing: list[str], source: str) -> None:
    if missing:
        log.warning("%d video(s) listed in %s are missing on disk (first: %s); they are left out",
                    len(missing), source, missing[0])


# ---------------------------------------------------------------------------------------------
# readers: root -> (records, class_names, missing)


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


_HMDB_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d+)\.txt$")


def read_hmdb51(root: Path):
    """HMDB51 official ``<class>_test_splitN.txt`` (1 = train, 2 = test, 0 = unused); classes sorted by name."""
    files = [p for p in _find(root, "*_test_split*.txt") if _HMDB_RE.match(p.name)]
    if not files:
        raise DataError(f"no <class>_test_splitN.txt files in {root} or one folder below; the hmdb51 format needs them")
    names = sorted({_HMDB_RE.match(p.name)["cls"] for p in files})
    index = {n: i for i, n in enumerate(names)}
    code = {"1": "train", "2": "test", "0": "unused"}
    entries: dict[str, dict] = {}
    for source in files:
        m = _HMDB_RE.match(source.name)
        cls, fold = m["cls"], int(m["fold"])
        for lineno, line in _read_lines(source):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in code:
                raise DataError(f"{source} line {lineno}: expected 'VIDEO 0|1|2' (1 train, 2 test, 0 unused), "
                                f"got {line[:80]!r}; fix or remove that line")
            rel = f"{cls}/{parts[0]}"
            entry = entries.setdefault(rel, {"label": index[cls], "splits": {}})
            entry["splits"][fold] = code[parts[1]]
    listed = list(entries)
    candidates = [root, root / "videos", root / "hmdb51_org", root / "HMDB51", files[0].parent.parent]
    folder, missing = _locate(listed, root, candidates, files[0])
    _warn_missing(missing, "the HMDB51 split files")
    miss = set(missing)
    records = [VideoRecord(_rel(folder / rel, root), e["label"], names[e["label"]], e["splits"])
               for rel, e in entries.items() if rel not in miss]
    return records, names, sorted(miss)


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


# Plain dict of readers: format name -> reader(root) -> (records, class names, missing).
READERS = {
    "folder": read_folder,
    "csv": read_csv_lists,
    "ucf101": read_ucf101,
    "hmdb51": read_hmdb51,
    "kinetics": read_kinetics,
}


def detect_format(root: str | os.PathLike) -> str:
    """The layout of ROOT: ucf101 > hmdb51 > kinetics > csv > folder (first that matches)."""
    root = _check_root(root)
    if _find(root, "classInd.txt"):
        return "ucf101"
    if any(_HMDB_RE.match(p.name) for p in _find(root, "*_test_split*.txt")):
        return "hmdb51"
    if _kinetics_csvs(root):
        return "kinetics"
    if any(p.stem.lower() in SPLIT_NAMES for p in root.glob("*.csv")):
        return "csv"
    if any(d.is_dir() and not d.name.startswith(".") for d in root.iterdir()):
        return "folder"
    if any(_is_video(p) for p in root.iterdir()):
        raise DataError(f"{root} holds videos but no class folders or split files; put each class in its own folder "
                        "(ROOT/CLASS/*.mp4) or add split lists")
    raise DataError(f"{root} is empty or has no recognisable dataset layout; expected class folders, "
                    "UCF101/HMDB51 split files, a Kinetics CSV or train.csv/val.csv lists")


def _probe_one(args):
    from vidssl.data.decode import probe

    path, stat = args
    try:
        return probe(path), None, stat
    except VideoDecodeError as exc:
        return None, exc.reason, stat


def _stat(path: str) -> tuple[int | None, float | None]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


def build_manifest(
    root: str | os.PathLike,
    format: str = "auto",
    probe: bool = True,
    workers: int | None = None,
    out: str | os.PathLike | None = None,
    write: bool = True,
    progress=None,
) -> Manifest:
    """Read the dataset at ``root``, probe its videos, write and return the manifest.

    Args:
        format: "auto" or a key of :data:`READERS`.
        probe: probe every video (fps, frames, size, audio, keyframes); unreadable files get
            ``record.error`` and stay in the manifest so they can be reported.
        workers: probing threads (PyAV releases the GIL while demuxing); default
            ``min(8, cpu_count)``.
        out: where to write the manifest (default ``ROOT/vidssl_manifest.json``). Probes of
            files whose size and mtime did not change are reused from an existing manifest there.
        write: write the manifest at all (when ROOT is read-only and ``out`` is not given, the
            manifest is not written and a warning says so).
        progress: optional callable ``progress(done, total)``.
    """
    root = _check_root(root)
    if format == "auto":
        format = detect_format(root)
    if format not in READERS:
        raise DataError(f"unknown dataset format {format!r}; choose auto or one of {', '.join(READERS)}")
    records, classes, missing = READERS[format](root)
    manifest = Manifest(root=str(root), class_names=list(classes), records=records, format=format, missing=list(missing))
    target = Path(out) if out is not None else root / MANIFEST_NAME
    if probe:
        probe_records(manifest, target, workers, progress)
    if write:
        try:
            manifest.save(target)
        except OSError as exc:
            if out is not None:
                raise DataError(f"cannot write the manifest to {target}: {exc.strerror}; choose another --out") from None
            log.warning("cannot write %s (%s); pass out=... (--out) to keep the manifest", target, exc.strerror)
    return manifest


def probe_records(manifest: Manifest, cache_path: str | os.PathLike | None = None, workers: int | None = None,
                  progress=None) -> None:
    """Fill ``info``/``error`` of every record in place, reusing unchanged probes from ``cache_path``."""
    cached: dict[str, VideoRecord] = {}
    if cache_path is not None and Path(cache_path).is_file():
        try:
            old = Manifest.load(cache_path)
            cached = {old.resolve(r): r for r in old.records if r.info is not None or r.error is not None}
        except DataError:
            cached = {}
    todo = []
    for i, record in enumerate(manifest.records):
        path = manifest.resolve(record)
        stat = _stat(path)
        hit = cached.get(path)
        if hit is not None and (hit.size, hit.mtime) == stat:
            record.info, record.error, record.size, record.mtime = hit.info, hit.error, hit.size, hit.mtime
        else:
            todo.append((i, path, stat))
    workers = workers or min(8, os.cpu_count() or 1)
    done = len(manifest.records) - len(todo)
    args = [(path, stat) for _, path, stat in todo]

    def consume(results):
        nonlocal done
        for (i, _, _), (info, error, stat) in zip(todo, results):
            record = manifest.records[i]
            record.info, record.error, (record.size, record.mtime) = info, error, stat
            done += 1
            if progress is not None:
                progress(done, len(manifest.records))

    if workers <= 1 or len(todo) < 4:
        consume(map(_probe_one, args))
    else:
        with ThreadPoolExecutor(workers) as pool:
            consume(pool.map(_probe_one, args))
    bad = manifest.unreadable()
    if bad:
        log.warning("%d of %d videos are unreadable (first: %s: %s)", len(bad), len(manifest.records),
                    manifest.resolve(bad[0]), bad[0].error)


def load_manifest(path_or_root: str | os.PathLike) -> Manifest:
    """Load ``FILE.json`` or ``ROOT/vidssl_manifest.json``."""
    path = Path(path_or_root).expanduser()
    if path.is_dir():
        path = path / MANIFEST_NAME
        if not path.is_file():
            raise DataError(f"no manifest in {path.parent}; run `vidssl data index {path.parent}` first")
    elif not path.is_file():
        raise DataError(f"manifest {path} does not exist; run `vidssl data index ROOT` first")
    return Manifest.load(path)
