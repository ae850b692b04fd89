"""Helpers shared by the layout readers: finding videos and split files, reading list files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vidssl.data.index import VIDEO_EXTENSIONS
from vidssl.errors import DataError

log = logging.getLogger(__name__)


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_video(p))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


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
