"""Scene metrics against numbers produced by the official BaSSL metric code (kakaobrain/bassl @ 0651dd6).

The pinned numbers were produced outside this project from ``bassl/finetune/utils/metric.py``:
``MovieNetMetric._compute_exact_recall``, ``_compute_recall_at_second`` (24 fps hard-coded) and
``_compute_mIoU`` on a result dict ``{vid: {shot id: {"pred": int(prob > 0.5), "gt": abs(label)}}}`` with the
shot tables written as ``shot_movie318``-style text files (``start end`` per shot id); AP from
``SklearnAPMetric.compute`` (sklearn's ``average_precision_score`` over the pooled shots; the pinned value
is the float64 number before the official code wraps it in a float32 tensor, which moves it by < 1e-6);
F1 as torchmetrics 0.x ``F1`` computes it for binary probabilities (positive when ``prob >= 0.5``).
Nothing from the official code is part of this file: only its outputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidssl.eval.scene_metrics import MovieScores, scene_metrics

FPS = 24.0  # the official Recall@3s assumes 24 fps


def make_movie(seed: int, shots: int, boundaries, missing=(), prob_scale: float = 1.0):
    """``(shot ids, frames of every shot id (first, last; inclusive), labels, probs)`` of the present shots."""
    rs = np.random.RandomState(seed)
    lengths = rs.randint(10, 120, size=shots)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    frames = np.stack([starts, starts + lengths - 1], axis=1)
    labels = np.zeros(shots, dtype=np.int64)
    labels[list(boundaries)] = 1
    probs = np.round((0.3 * labels + 0.6 * rs.rand(shots)) * prob_scale, 3)
    probs[probs == 0.5] = 0.501  # keep clear of the threshold
    keep = np.array([i not in missing for i in range(shots)])
    return np.arange(shots)[keep], frames, labels[keep], probs[keep]


def movies() -> dict:
    return {
        "tt0000001": make_movie(1, 30, (4, 9, 10, 17, 25)),
        "tt0000002": make_movie(2, 25, (6, 13, 20)),
        "tt0000003": make_movie(3, 21, (3, 8, 14, 18), missing=(11,)),  # shot id 11 absent from the results
        "tt0000004": make_movie(4, 12, (5,), prob_scale=0.5),  # no predicted boundary: mIoU 0 for this movie
    }


def vidssl_scores(movie_table: dict, fps: float = FPS) -> dict:
    return scene_metrics([MovieScores(vid, probs, labels, frames[ids], fps, shot_ids=ids)
                          for vid, (ids, frames, labels, probs) in movie_table.items()])


def assert_official(ours: dict, official: dict) -> None:
    for name, value in official.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_synthetic_movies_equal_the_official_metrics():
    assert_official(vidssl_scores(movies()), {
        "ap": 62.70952909692114,
        "f1": 38.70967741935484,
        "recall": 39.166666666666664,
        "recall_at_3s": 54.16652986147442,
        "miou": 37.60456672139373,
    })


def test_unknown_labels_equal_the_official_metrics_without_those_shots():
    # Departure (docs/bassl.md): -1 stays unknown. The official data path turns it into a boundary
    # (abs), which on this data gives AP 63.389918, F1 48.484848, Recall 43.452381, Recall@3s 54.166544,
    # mIoU 42.318111. vidssl equals the official metrics run on the movies with those two shots removed.
    table = movies()
    ids, frames, labels, probs = table["tt0000001"]
    labels = labels.copy()
    labels[[12, 20]] = -1  # both shots are predicted boundaries
    table["tt0000001"] = (ids, frames, labels, probs)
    ours = vidssl_scores(table)
    assert_official(ours, {
        "ap": 63.8580920994714,
        "f1": 41.37931034482759,
        "recall": 39.166666666666664,
        "recall_at_3s": 54.16652986147442,
        "miou": 40.76532457412922,
    })
    assert ours["f1"] != pytest.approx(48.484848484848484, abs=1e-3)


def one_boundary_movie() -> dict:
    # true boundary after shot 1 (ends at frame 99); predicted after shot 2 (ends at frame 172): 73 frames
    return {"tt0000009": (np.arange(4), np.array([[0, 49], [50, 99], [100, 172], [173, 240]]),
                          np.array([0, 1, 0, 0]), np.array([0.1, 0.2, 0.9, 0.3]))}


def test_recall_at_3s_at_24_fps_equals_official_and_uses_the_real_fps_otherwise():
    assert_official(vidssl_scores(one_boundary_movie()), {
        "ap": 33.33333333333333, "f1": 0.0, "recall": 0.0, "recall_at_3s": 0.0, "miou": 57.55813953488372,
    })
    # Departure (docs/bassl.md): the movie's own fps. 73 frames are 3.04 s at the official 24 fps (a miss)
    # but 2.92 s at 25 fps (a hit): 1 / (1 + 1e-5).
    assert vidssl_scores(one_boundary_movie(), fps=25.0)["recall_at_3s"] == pytest.approx(100 / (1 + 1e-5), abs=1e-9)


@pytest.mark.parametrize("prob_scale", [1.0, 0.5], ids=["with_a_predicted_boundary", "without"])
def test_movie_without_true_boundary_is_left_out_of_miou(prob_scale):
    # Departure (docs/bassl.md). Official: with a predicted boundary in that movie, _compute_mIoU returns
    # None for the whole test set; without one it counts the movie as mIoU 0 (30.083653 here).
    # vidssl leaves the movie out either way: the mIoU of the other four movies (37.604567). The other
    # metrics equal the official ones.
    table = movies()
    table["tt0000005"] = make_movie(5, 10, (), prob_scale=prob_scale)
    ours = vidssl_scores(table)
    official_ap = 61.44141098044431 if prob_scale == 1.0 else 62.70952909692114
    official_f1 = 37.5 if prob_scale == 1.0 else 38.70967741935484
    assert_official(ours, {"ap": official_ap, "f1": official_f1, "recall": 31.333333333333336,
                           "recall_at_3s": 43.33322388917954, "miou": 37.60456672139373})
    assert ours["miou_movies_without_true_scene"] == 1
    assert not math.isclose(ours["miou"], 30.083653377114985, abs_tol=1e-3)
