"""Index a dataset once: records (path, label, splits, probed metadata) in a JSON manifest.

Layouts read (``format=``): ``folder``, ``csv``, ``ucf101``, ``hmdb51``, ``kinetics``, ``movienet``
and ``images`` (still images in class folders, e.g. ImageNet); their readers and the auto-detection
live in :mod:`vidssl.data.layouts` (one module per layout, the plain dict
:data:`~vidssl.data.layouts.LAYOUTS`), re-exported here as ``READERS`` and ``detect_format``.

:func:`build_manifest` detects the layout, probes every file in parallel (reusing probes
of unchanged files from an earlier manifest) and writes ``ROOT/vidssl_manifest.json``. The
records of a still-image layout (:data:`STILL_FORMATS`, :attr:`Manifest.stills`) are one-frame
"videos": probed with :func:`~vidssl.data.decode.probe_image` and decoded with the ``image``
decoder, so every plan and slicer reads them unchanged.
Mistakes the user can fix raise :class:`~vidssl.errors.DataError` with a one-line message.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidssl.data.decode import VideoInfo
from vidssl.errors import DataError, VideoDecodeError

__all__ = [
    "VideoRecord",
    "Manifest",
    "build_manifest",
    "load_manifest",
    "probe_records",
    "check_annotations",
    "detect_format",
    "READERS",
    "VIDEO_EXTENSIONS",
    "STILL_FORMATS",
    "FRAME_FOLDER_FORMATS",
    "MANIFEST_NAME",
    "probe_file",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "vidssl_manifest.json"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
#: Layouts whose records are still images (one frame each), not videos.
STILL_FORMATS = ("images",)
#: Layouts whose records are folders of frames, each read as one video (MovieNet's keyframes).
FRAME_FOLDER_FORMATS = ("movienet_keyframes",)
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
        annotations: optional per-video annotations (empty when there are none), all keys
            optional and checked by :func:`check_annotations` when a manifest is built or loaded:

            * ``"shots"``: list of ``[start_frame, end_frame)`` int pairs (end exclusive) of the
              video's shots, in order, not overlapping, ending at or before ``info.num_frames``;
            * ``"shot_labels"``: list of ints, one per shot: 1 if a scene ends after this shot,
              0 if not, -1 unknown (MovieNet-SSeg's ``boundary_label``);
            * ``"captions"``: list of ``{"start": seconds, "end": seconds, "text": str}``;
            * anything else a layout reader wants to attach, kept as it is (it must be
              JSON-serialisable, since it is saved in the manifest).
    """

    path: str
    label: int = -1
    label_name: str = ""
    splits: dict[int, str] = field(default_factory=dict)
    info: VideoInfo | None = None
    error: str | None = None
    size: int | None = None
    mtime: float | None = None
    annotations: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {
            "path": self.path, "label": self.label, "label_name": self.label_name,
            "splits": {str(k): v for k, v in self.splits.items()},
            "info": self.info.to_dict() if self.info else None,
            "error": self.error, "size": self.size, "mtime": self.mtime,
        }
        if self.annotations:  # written only when present: unannotated manifests stay as they were
            data["annotations"] = self.annotations
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "VideoRecord":
        return cls(
            path=data["path"], label=int(data.get("label", -1)), label_name=data.get("label_name", ""),
            splits={int(k): v for k, v in (data.get("splits") or {}).items()},
            info=VideoInfo.from_dict(data["info"]) if data.get("info") else None,
            error=data.get("error"), size=data.get("size"), mtime=data.get("mtime"),
            annotations=data.get("annotations") or {},  # absent in manifests written before annotations
        )


@dataclass
class Manifest:
    """Records + class names + the root their relative paths start from."""

    root: str
    class_names: list[str]
    records: list[VideoRecord]
    format: str = ""
    missing: list[str] = field(default_factory=list)  # listed in a split file but not on disk
    # list files may name paths outside ROOT (``../..``, absolute): used only when the user allowed it
    allow_outside_root: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def resolve(self, record: VideoRecord) -> str:
        """Absolute path of a record's file."""
        return record.path if os.path.isabs(record.path) else os.path.join(self.root, record.path)

    def outside_root(self) -> list[str]:
        """Record paths that lie outside ``root`` once ``..`` is resolved (symlinks inside ROOT are not
        followed: pointing them elsewhere is the user's own choice)."""
        root = os.path.normpath(os.path.abspath(self.root))
        return [r.path for r in self.records
                if os.path.commonpath([root, os.path.normpath(os.path.abspath(self.resolve(r)))]) != root]

    def check_inside_root(self, where: str = "") -> None:
        """A :class:`DataError` when records lie outside ``root`` and that was not allowed."""
        outside = [] if self.allow_outside_root else self.outside_root()
        if outside:
            raise DataError(f"{len(outside)} video path(s) {where or 'listed'} lie outside the dataset root {self.root} "
                            f"(e.g. {outside[0]}); move them under it, or index with `vidssl data index ROOT "
                            "--allow-outside-root` if that is intended")

    @property
    def stills(self) -> bool:
        """Whether the records are still images (a layout of :data:`STILL_FORMATS`), not videos."""
        return self.format in STILL_FORMATS

    @property
    def frame_folders(self) -> bool:
        """Whether the records are folders of frames (a layout of :data:`FRAME_FOLDER_FORMATS`), each one video."""
        return self.format in FRAME_FOLDER_FORMATS

    @property
    def media(self) -> str:
        """What a record is: ``"image"``, ``"frames"`` (a folder of frames) or ``"video"``; also the name
        of the decoder that reads it when it is not a video."""
        return "image" if self.stills else "frames" if self.frame_folders else "video"

    @property
    def record_kind(self) -> str:
        """What one record is, in words for messages: ``"image"``, ``"frame folder"`` or ``"video"``."""
        return {"image": "image", "frames": "frame folder"}.get(self.media, "video")

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
                "missing": self.missing, "allow_outside_root": self.allow_outside_root,
                "records": [r.to_dict() for r in self.records]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (tmp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from vidssl.io import atomic_write

        text = json.dumps(self.to_dict(), indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text), len(text), "the manifest")
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
        for record in records:
            try:
                check_annotations(record)
            except DataError as exc:
                raise DataError(f"manifest {path}: {exc}") from None
        if not os.path.isdir(root) and path.name == MANIFEST_NAME:
            root = str(path.parent.resolve())  # the dataset folder was moved together with its manifest
        manifest = cls(root=root, class_names=list(data.get("class_names", [])), records=records,
                       format=data.get("format", ""), missing=list(data.get("missing", [])),
                       allow_outside_root=bool(data.get("allow_outside_root", False)))
        manifest.check_inside_root(f"in {path}")
        _attach_captions(manifest)
        return manifest


def _attach_captions(manifest: "Manifest") -> None:
    """Captions from ``ROOT/captions.json`` into ``annotations["captions"]`` (:func:`vidssl.data.text.attach_captions`)."""
    from vidssl.data.text import attach_captions

    attach_captions(manifest)
    for record in manifest.records:
        _check_captions(record)


def _check_captions(record: "VideoRecord") -> None:
    captions = (record.annotations or {}).get("captions")
    if captions is None:
        return
    where = f"annotations of {record.path}"
    if not isinstance(captions, list):
        raise DataError(f"{where}: 'captions' must be a list of {{start, end, text}}, got {type(captions).__name__}")
    for i, c in enumerate(captions):
        if not (isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("start"), (int, float))
                and isinstance(c.get("end"), (int, float)) and c["start"] < c["end"]):
            raise DataError(f"{where}: caption {i} is {c!r}, not {{start: seconds, end: seconds > start, text: str}}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_annotations(record: VideoRecord) -> None:
    """Raise :class:`~vidssl.errors.DataError` naming ``record.path`` when its annotations are wrong.

    Checked (see :class:`VideoRecord`): ``shots`` are ``[start, end)`` int pairs with
    ``0 <= start < end``, increasing and not overlapping, none ending past the probed frame
    count (when the record was probed); ``shot_labels`` has one label in {-1, 0, 1} per shot.
    Other keys (``captions`` included) are not checked.
    """
    annotations = record.annotations
    where = f"annotations of {record.path}"
    if not isinstance(annotations, dict):
        raise DataError(f"{where} must be a mapping of name -> value, got {type(annotations).__name__}")
    shots = annotations.get("shots")
    num_shots = 0
    if shots is not None:
        if not isinstance(shots, (list, tuple)):
            raise DataError(f"{where}: 'shots' must be a list of [start_frame, end_frame) pairs, got {type(shots).__name__}")
        frames = record.info.num_frames if record.info is not None else None
        previous_end = 0
        for i, shot in enumerate(shots):
            if not (isinstance(shot, (list, tuple)) and len(shot) == 2 and all(_is_int(v) for v in shot)):
                raise DataError(f"{where}: shot {i} is {shot!r}, not a [start_frame, end_frame) pair of ints")
            start, end = shot
            if not 0 <= start < end:
                raise DataError(f"{where}: shot {i} [{start}, {end}) does not have 0 <= start < end")
            if start < previous_end:
                raise DataError(f"{where}: shot {i} [{start}, {end}) overlaps or comes before the previous shot "
                                f"(which ends at frame {previous_end}); shots must be increasing and not overlap")
            if frames is not None and end > frames:
                raise DataError(f"{where}: shot {i} [{start}, {end}) ends past the video's {frames} frames")
            previous_end = end
        num_shots = len(shots)
    labels = annotations.get("shot_labels")
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or len(labels) != num_shots:
            count = len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__
            raise DataError(f"{where}: shot_labels has {count} entries for {num_shots} shots; give one label per shot")
        for i, label in enumerate(labels):
            if not _is_int(label) or label not in (-1, 0, 1):
                raise DataError(f"{where}: shot_labels[{i}] is {label!r}, not 1 (a scene ends after the shot), "
                                "0 (it does not) or -1 (unknown)")


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; check the path")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is a file, not a folder; give the folder that holds the videos")
    return root.resolve()


# ---------------------------------------------------------------------------------------------
# layout readers: re-exported from vidssl.data.layouts. The readers build VideoRecords, so that
# package imports this module; importing it here only on first use (PEP 562 module __getattr__)
# keeps either import order working.

_LAYOUT_EXPORTS = {"READERS": "LAYOUTS", "LAYOUTS": "LAYOUTS", "detect_format": "detect_format",
                   "read_folder": "read_folder", "read_csv_lists": "read_csv_lists", "read_ucf101": "read_ucf101",
                   "read_hmdb51": "read_hmdb51", "read_kinetics": "read_kinetics", "read_images": "read_images",
                   "KINETICS_COLUMNS": "KINETICS_COLUMNS"}

if TYPE_CHECKING:
    from vidssl.data.layouts import KINETICS_COLUMNS, LAYOUTS, detect_format, read_csv_lists, read_folder
    from vidssl.data.layouts import LAYOUTS as READERS
    from vidssl.data.layouts import read_hmdb51, read_images, read_kinetics, read_ucf101


def __getattr__(name: str):
    if name in _LAYOUT_EXPORTS:
        from vidssl.data import layouts

        return getattr(layouts, _LAYOUT_EXPORTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# probing and building


def probe_file(path: str, media: str = "video") -> VideoInfo:
    """Probe one record: a video (:func:`~vidssl.data.decode.probe`), an ``"image"``
    (:func:`~vidssl.data.decode.probe_image`, a one-frame :class:`VideoInfo`) or a folder of
    ``"frames"`` (:func:`~vidssl.data.decode.probe_frame_folder`); ``media`` is :attr:`Manifest.media`."""
    from vidssl.data.decode import probe, probe_frame_folder, probe_image

    if media not in ("video", "image", "frames"):
        raise ValueError(f"media must be 'video', 'image' or 'frames', got {media!r}")
    return probe_image(path) if media == "image" else probe_frame_folder(path) if media == "frames" else probe(path)


def _probe_one(args):
    path, stat, media = args
    try:
        return probe_file(path, media), None, stat
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
    allow_outside_root: bool = False,
) -> Manifest:
    """Read the dataset at ``root``, probe its videos, write and return the manifest.

    Args:
        format: "auto" or a key of :data:`~vidssl.data.layouts.LAYOUTS` (``READERS`` here).
        probe: probe every video (fps, frames, size, audio, keyframes); unreadable files get
            ``record.error`` and stay in the manifest so they can be reported.
        workers: probing threads (PyAV releases the GIL while demuxing); default
            ``min(8, cpu_count)``.
        out: where to write the manifest (default ``ROOT/vidssl_manifest.json``). Probes of
            files whose size and mtime did not change are reused from an existing manifest there.
        write: write the manifest at all (when ROOT is read-only and ``out`` is not given, the
            manifest is not written and a warning says so).
        progress: optional callable ``progress(done, total)``.
        allow_outside_root: use listed paths outside ROOT (``../..`` or absolute); otherwise they
            are a :class:`DataError` (a list file must not reach files elsewhere unnoticed).
    """
    from vidssl.data.layouts import LAYOUTS, detect_format

    root = _check_root(root)
    if format == "auto":
        format = detect_format(root)
    if format not in LAYOUTS:
        raise DataError(f"unknown dataset format {format!r}; choose auto or one of {', '.join(LAYOUTS)}")
    records, classes, missing = LAYOUTS[format](root)
    manifest = Manifest(root=str(root), class_names=list(classes), records=records, format=format, missing=list(missing),
                        allow_outside_root=allow_outside_root)
    manifest.check_inside_root("listed in its split files")
    target = Path(out) if out is not None else root / MANIFEST_NAME
    if probe:
        probe_records(manifest, target, workers, progress)
    _attach_captions(manifest)  # ROOT/captions.json, after probing (a caption may span the whole video)
    for record in manifest.records:  # after probing, so shots are checked against the frame counts
        check_annotations(record)
    manifest.saved_to = None  # where the manifest was written (None: it was not)
    if write:
        try:
            manifest.save(target)
            manifest.saved_to = str(target)
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
    args = [(path, stat, manifest.media) for _, path, stat in todo]

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
        log.warning("%d of %d %s are unreadable (first: %s: %s); they are left out of training, `vidssl data check` "
                    "lists them", len(bad), len(manifest.records), f"{manifest.record_kind}s",
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
