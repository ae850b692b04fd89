"""Unreadable videos in evaluation: excluded, counted, named — never replaced.

Training tolerates an unreadable video by drawing another one (``VideoDataset``'s default).
Evaluation must not: a substitute carries another video's features *and label*, so the score
silently measures the wrong set. The evaluation datasets are built with
``on_unreadable="exclude"`` (:func:`vidssl.eval.features.make_dataset`); the feature extractor
keeps, per pass, the record indices it could read and the paths it could not, and
:func:`align_passes` keeps only the videos every pass read (a truncated video may fail in one
augmented pass and not in another). :func:`check_exclusions` turns too many failures into an
error: a score over a fraction of the test set is not the number a paper reports.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from vidssl.errors import DataError

#: Default largest fraction of a split's videos that may be unreadable before evaluation stops.
DEFAULT_MAX_UNREADABLE = 0.05


def align_passes(rounds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join per-pass ``(features n×V×D, labels n, indices n)`` into ``N×ΣV×D`` over the videos
    every pass read, in the first pass's order. Returns ``(features, labels, indices)``."""
    first_indices = rounds[0][2]
    common = set(first_indices.tolist())
    for _, _, indices in rounds[1:]:
        common &= set(indices.tolist())
    order = [i for i in first_indices.tolist() if i in common]
    blocks, labels = [], None
    for features, round_labels, indices in rounds:
        row = {int(index): position for position, index in enumerate(indices.tolist())}
        take = np.asarray([row[i] for i in order], dtype=np.int64)
        blocks.append(features[take])
        if labels is None:
            labels = round_labels[take]
    dim = rounds[0][0].shape[-1] if rounds[0][0].ndim == 3 else 0
    features = np.concatenate(blocks, axis=1) if order else np.zeros((0, sum(b.shape[1] for b in blocks), dim), np.float32)
    return features, np.asarray(labels, dtype=np.int64), np.asarray(order, dtype=np.int64)


def check_exclusions(meta: Mapping[str, Any], max_unreadable: float) -> None:
    """A :class:`DataError` when more than ``max_unreadable`` (a fraction) of the split's videos
    could not be read, or none could; ``meta`` is a feature set's (``videos``, ``evaluated``, ``excluded``)."""
    total = int(meta.get("videos", 0) or 0)
    if not total:
        return
    evaluated = int(meta.get("evaluated", total))
    excluded = dict(meta.get("excluded") or {})
    where = f"the {meta.get('split', '?')} set of split {meta.get('fold', '?')}"
    first = next(iter(sorted(excluded.items())), None)
    example = f" (first: {first[0]}: {first[1]})" if first else ""
    if evaluated == 0:
        raise DataError(f"no video of {where} could be read{example}; run `vidssl data check {meta.get('root', 'ROOT')}`")
    if (total - evaluated) / total > max_unreadable:
        raise DataError(f"{total - evaluated} of {total} videos of {where} could not be read{example}: more than the "
                        f"{max_unreadable:.0%} allowed. Fix or remove them (`vidssl data check {meta.get('root', 'ROOT')}`) "
                        "or raise --max-unreadable")


def video_counts(train_meta: Mapping[str, Any], test_meta: Mapping[str, Any], n_train: int, n_test: int) -> dict[str, int]:
    """The counts reported next to every accuracy: videos evaluated and videos excluded."""
    excluded = len(dict(train_meta.get("excluded") or {})) + len(dict(test_meta.get("excluded") or {}))
    return {"test_videos": int(n_test), "train_videos": int(n_train), "excluded_videos": int(excluded)}


def excluded_list(metas: Mapping[str, Mapping[str, Any]], fold: int) -> list[dict[str, Any]]:
    """``[{"fold", "set", "path", "reason"}]`` of the videos left out of ``fold`` (for report.json)."""
    return [{"fold": int(fold), "set": name, "path": path, "reason": reason}
            for name, meta in metas.items() for path, reason in sorted(dict(meta.get("excluded") or {}).items())]
