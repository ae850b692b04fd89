"""Scene-boundary metrics of MovieNet-SSeg as BaSSL computes them (reference §1.13), all together.

A movie's result (:class:`MovieScores`): per shot (in order) the probability that a scene ends after
it, its ground-truth label (1 / 0, or -1 = unknown), the shot's first and last frame (inclusive, as
MovieNet's ``shot_movie318`` tables) and the movie's real frame rate.

* **AP**: ``average_precision_score`` over every labelled shot of every movie, pooled.
* **F1**: binary F1 of ``prob > threshold`` (0.5) over the pooled shots.
* **Recall**: per movie, the recall of ``prob > threshold`` against the labels; mean over movies
  (a movie without a true boundary counts 0, as ``recall_score`` gives).
* **Recall@3s**: per movie, the fraction of true boundaries with a predicted boundary within ±5
  shots whose end frame lies less than 3 s away, at the movie's own fps (BaSSL assumes 24 fps);
  ``hits / (#true + 1e-5)``, mean over movies.
* **mIoU** (LGSS): per movie, shots sorted by id are grouped into scenes, each closed by a shot
  labelled 1 — shots after the last 1 belong to no scene; a scene spans (first frame of its first
  shot, last frame of its last shot); ``(mean over true scenes of the best IoU with a predicted
  scene + the same with the roles swapped) / 2``, IoU on frame intervals with
  ``intersection = max(0, min(ends) - max(starts))`` and ``union = max(ends) - min(starts)``. A
  movie with no predicted boundary scores 0. A movie with no true boundary has no true scene: BaSSL
  returns no mIoU at all then; here the movie is left out of mIoU and counted in
  ``miou_movies_without_true_scene``.

Shots labelled -1 (unknown) are left out of every metric (BaSSL's ``abs()`` turned them into
boundaries: reference §1.15 quirk 2). All numbers are reported ×100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidssl.errors import DataError

__all__ = ["MovieScores", "scene_metrics", "scenes_of", "interval_iou", "miou", "recall_at_seconds"]


@dataclass
class MovieScores:
    """One movie's per-shot results (``N`` shots in order).

    Attributes:
        video_id: the movie's id.
        probs: float ``N``, probability of a scene boundary after each shot.
        labels: int ``N``: 1 boundary, 0 none, -1 unknown (left out).
        shot_frames: int ``N×2``: each shot's first and last frame (inclusive).
        fps: the movie's frame rate (Recall@3s).
        shot_ids: int ``N`` ids of the shots (default ``0..N-1``); neighbours are counted in ids.
    """

    video_id: str
    probs: np.ndarray
    labels: np.ndarray
    shot_frames: np.ndarray
    fps: float
    shot_ids: np.ndarray | None = None

    def __post_init__(self):
        self.probs = np.asarray(self.probs, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.shot_frames = np.asarray(self.shot_frames, dtype=np.int64).reshape(-1, 2)
        n = len(self.probs)
        self.shot_ids = np.arange(n) if self.shot_ids is None else np.asarray(self.shot_ids, dtype=np.int64)
        if not (len(self.labels) == len(self.shot_frames) == len(self.shot_ids) == n):
            raise DataError(f"movie {self.video_id}: {n} probabilities, {len(self.labels)} labels, "
                            f"{len(self.shot_frames)} shot frame ranges and {len(self.shot_ids)} shot ids must agree")
        if not np.isfinite(self.probs).all():
            raise DataError(f"movie {self.video_id}: non-finite boundary probabilities")
        if not (self.fps and self.fps > 0):
            raise DataError(f"movie {self.video_id}: fps must be > 0 (Recall@3s is measured at the movie's real "
                            f"frame rate), got {self.fps}")
        bad = set(np.unique(self.labels).tolist()) - {-1, 0, 1}
        if bad:
            raise DataError(f"movie {self.video_id}: labels must be 1, 0 or -1 (unknown), got {sorted(bad)}")

    def labelled(self) -> "MovieScores":
        """The shots with a known label only."""
        keep = self.labels >= 0
        return MovieScores(self.video_id, self.probs[keep], self.labels[keep], self.shot_frames[keep], self.fps,
                           self.shot_ids[keep])


def scenes_of(labels: np.ndarray, shot_frames: np.ndarray) -> list[tuple[int, int]]:
    """LGSS scenes ``(start frame, end frame)`` of a 0/1 label sequence: runs of shots each closed by
    a shot labelled 1; shots after the last 1 are dropped (BaSSL's ``get_pair_list``)."""
    scenes, first = [], 0
    for index, label in enumerate(np.asarray(labels)):
        if label == 1:
            scenes.append((int(shot_frames[first][0]), int(shot_frames[index][1])))
            first = index + 1
    return scenes


def interval_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two frame intervals as LGSS computes it (no +1: a frame interval ``(s, e)`` has length ``e - s``)."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    if intersection == 0:
        return 0.0
    return intersection / (max(a[1], b[1]) - min(a[0], b[0]))


def _best_iou_mean(reference: list, other: list) -> float:
    return float(np.mean([max(interval_iou(r, o) for o in other) for r in reference]))


def miou(movie: MovieScores, threshold: float = 0.5) -> float | None:
    """LGSS mIoU of one movie's labelled shots (None when it has no true scene)."""
    true_scenes = scenes_of(movie.labels, movie.shot_frames)
    if not true_scenes:
        return None
    predicted = scenes_of((movie.probs > threshold).astype(np.int64), movie.shot_frames)
    if not predicted:
        return 0.0
    return (_best_iou_mean(true_scenes, predicted) + _best_iou_mean(predicted, true_scenes)) / 2


def recall_at_seconds(movie: MovieScores, threshold: float = 0.5, seconds: float = 3.0, neighbours: int = 5) -> float:
    """Fraction of true boundaries with a predicted one within ±``neighbours`` shot ids and ``seconds``
    (end frames, at the movie's fps); ``hits / (#true + 1e-5)`` as BaSSL."""
    by_id = {int(i): k for k, i in enumerate(movie.shot_ids)}
    predicted = movie.probs > threshold
    hits = total = 0
    for k in np.flatnonzero(movie.labels == 1):
        total += 1
        end = movie.shot_frames[k][1]
        for offset in range(-neighbours, neighbours + 1):
            other = by_id.get(int(movie.shot_ids[k]) + offset)
            if other is not None and predicted[other] and abs(movie.shot_frames[other][1] - end) / movie.fps < seconds:
                hits += 1
                break
    return hits / (total + 1e-5)


def scene_metrics(movies: list[MovieScores], threshold: float = 0.5) -> dict[str, float]:
    """AP, F1, Recall, Recall@3s and mIoU (×100) over ``movies`` (see the module docstring), with counts."""
    from sklearn.metrics import average_precision_score, f1_score, recall_score

    movies = [m.labelled() for m in movies]
    movies = [m for m in movies if len(m.labels)]
    if not movies:
        raise DataError("no labelled shots to evaluate (every label is -1 or there are no movies)")
    labels = np.concatenate([m.labels for m in movies])
    probs = np.concatenate([m.probs for m in movies])
    if labels.max() < 1:
        raise DataError("the evaluated shots hold no scene boundary (every label is 0): AP is undefined; "
                        "evaluate on movies with more than one scene")
    predicted = probs > threshold
    mious = [miou(m, threshold) for m in movies]
    kept = [v for v in mious if v is not None]
    return {
        "ap": 100.0 * float(average_precision_score(labels, probs)),
        "f1": 100.0 * float(f1_score(labels, predicted, zero_division=0)),
        "recall": 100.0 * float(np.mean([recall_score(m.labels, m.probs > threshold, zero_division=0)
                                         for m in movies])),
        "recall_at_3s": 100.0 * float(np.mean([recall_at_seconds(m, threshold) for m in movies])),
        "miou": 100.0 * float(np.mean(kept)) if kept else float("nan"),
        "movies": len(movies),
        "shots": int(len(labels)),
        "boundaries": int(labels.sum()),
        "miou_movies_without_true_scene": len(mious) - len(kept),
    }
