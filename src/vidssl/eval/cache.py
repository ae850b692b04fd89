"""The feature cache's files: chunks written atomically as extraction goes, damaged entries discarded.

A chunk (``part_RRR_CCCCC.npz``) holds the features, labels and record indices of the videos of one
range that could be read, and the paths that could not (:mod:`vidssl.eval.exclusion`). Writes go
through :func:`vidssl.io.atomic_write` (a full disk leaves no partial file); a chunk or entry that
cannot be read back is removed and recomputed rather than trusted.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vidssl.io import atomic_write

__all__ = ["discard_entry", "savez", "save_part", "load_part"]

log = logging.getLogger(__name__)


def discard_entry(entry: Path, exc: BaseException) -> None:
    """Remove a damaged cache entry (a directory or one chunk) so it is recomputed; None."""
    log.warning("feature cache entry %s is damaged (%s): discarded, recomputing",
                entry, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
    return None


def savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays`` to exactly ``path``."""
    with open(path, "wb") as handle:  # a handle: np.savez would append ".npz" to a temporary name
        np.savez(handle, **arrays)


def save_part(part: Path, result: dict[str, Any]) -> None:
    """Write one chunk (``features``, ``labels``, ``indices``, ``unreadable``) atomically."""
    arrays = {k: result[k] for k in ("features", "labels", "indices")}
    arrays["unreadable"] = np.asarray(json.dumps(result["unreadable"]))
    atomic_write(part, lambda tmp: savez(tmp, arrays), sum(a.nbytes for a in arrays.values()), "a feature-cache chunk")


def load_part(part: Path) -> dict[str, Any]:
    """Read a chunk written by :func:`save_part` (any damage raises; the caller discards it)."""
    with np.load(part) as data:
        return {"features": data["features"], "labels": data["labels"], "indices": data["indices"],
                "unreadable": json.loads(str(data["unreadable"]))}
