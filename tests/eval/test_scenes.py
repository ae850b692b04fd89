"""Scene-boundary metrics on hand-computed boundary sequences (AP, F1, Recall, Recall@3s, mIoU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidssl.errors import DataError
from vidssl.eval.scene_metrics import MovieScores, interval_iou, miou, recall_at_seconds, scene_metrics, scenes_of


def frames_of(n: int, length: int = 10) -> np.ndarray:
    """Shot i spans frames [length·i, length·i + length - 1] (inclusive, as MovieNet's tables)."""
    return np.stack([np.arange(n) * length, np.arange(n) * length + length - 1], axis=1)


def movie_a(fps: float = 10.0) -> MovieScores:
    return MovieScores("a", [0.1, 0.8, 0.2, 0.6, 0.3, 0.1], [0, 1, 0, 0, 1, 0], frames_of(6), fps)


def movie_b() -> MovieScores:  # no predicted boundary
    return MovieScores("b", [0.05, 0.4, 0.04, 0.03], [0, 1, 0, 1], frames_of(4), 10.0)


def test_scenes_drop_the_trailing_shots():
    # true scenes: shots 0-1 and 2-4; shot 5 follows the last boundary and belongs to no scene
    assert scenes_of(np.array([0, 1, 0, 0, 1, 0]), frames_of(6)) == [(0, 19), (20, 49)]
    assert scenes_of(np.array([0, 0, 0]), frames_of(3)) == []


def test_interval_iou_has_no_plus_one():
    assert interval_iou((20, 49), (20, 39)) == pytest.approx(19 / 29)
    assert interval_iou((0, 9), (10, 19)) == 0.0
    assert interval_iou((0, 19), (0, 19)) == 1.0


def test_miou_by_hand():
    # true (0,19),(20,49); predicted (0,19),(20,39) (shots 4-5 trail the last predicted boundary)
    assert miou(movie_a()) == pytest.approx((1 + 19 / 29) / 2)
    assert miou(movie_b()) == 0.0  # no predicted boundary: 0
    assert miou(MovieScores("c", [0.9, 0.1], [0, 0], frames_of(2), 10.0)) is None  # no true scene


def test_recall_at_3s_uses_the_movies_real_fps():
    # boundary after shot 1: predicted there (0 s); after shot 4 (end frame 49): nearest prediction
    # after shot 3 (end frame 39) is 10 frames away = 1 s at 10 fps, 5 s at 2 fps
    assert recall_at_seconds(movie_a(fps=10.0)) == pytest.approx(2 / (2 + 1e-5))
    assert recall_at_seconds(movie_a(fps=2.0)) == pytest.approx(1 / (2 + 1e-5))


def test_all_metrics_together_by_hand():
    out = scene_metrics([movie_a(), movie_b()])
    # pooled ranking: .8(1) .6(0) .4(1) .3(1) .2 .1 .1 .05 .04 (0) .03(1): AP = (1 + 2/3 + 3/4 + 4/10) / 4
    assert out["ap"] == pytest.approx(100 * (1 + 2 / 3 + 3 / 4 + 4 / 10) / 4)
    # predicted: a1 (TP), a3 (FP); missed: a4, b1, b3 -> P 1/2, R 1/4, F1 1/3
    assert out["f1"] == pytest.approx(100 / 3)
    assert out["recall"] == pytest.approx(100 * (0.5 + 0.0) / 2)
    assert out["recall_at_3s"] == pytest.approx(100 * (2 / (2 + 1e-5) + 0) / 2)
    assert out["miou"] == pytest.approx(100 * ((1 + 19 / 29) / 2 + 0) / 2)
    assert (out["movies"], out["shots"], out["boundaries"]) == (2, 10, 4)


def test_unknown_labels_are_left_out_not_turned_into_boundaries():
    a = movie_a()
    with_unknown = MovieScores("a", [*a.probs, 0.9], [*a.labels, -1], frames_of(7), 10.0)
    assert scene_metrics([with_unknown, movie_b()]) == scene_metrics([a, movie_b()])


def test_movie_without_true_boundary_is_counted_out_of_miou():
    out = scene_metrics([movie_a(), MovieScores("c", [0.9, 0.1], [0, 0], frames_of(2), 10.0)])
    assert out["miou"] == pytest.approx(100 * (1 + 19 / 29) / 2)
    assert out["miou_movies_without_true_scene"] == 1


def test_bad_inputs_fail_loudly():
    with pytest.raises(DataError, match="fps"):
        MovieScores("x", [0.1], [0], frames_of(1), 0.0)
    with pytest.raises(DataError, match="must agree"):
        MovieScores("x", [0.1, 0.2], [0], frames_of(2), 24.0)
    with pytest.raises(DataError, match="labels must be"):
        MovieScores("x", [0.1], [2], frames_of(1), 24.0)
    with pytest.raises(DataError, match="non-finite"):
        MovieScores("x", [math.nan], [0], frames_of(1), 24.0)
    with pytest.raises(DataError, match="no scene boundary"):
        scene_metrics([MovieScores("x", [0.1, 0.2], [0, 0], frames_of(2), 24.0)])
    with pytest.raises(DataError, match="no labelled shots"):
        scene_metrics([MovieScores("x", [0.1], [-1], frames_of(1), 24.0)])


def test_windows_repeat_the_edge_shots():
    import torch

    from vidssl.eval.scenes import shot_windows

    features = torch.arange(5.0)[:, None]
    windows = shot_windows(features, np.array([0, 2, 4]), 2)[..., 0]
    assert windows.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [2, 3, 4, 4, 4]]


def test_balanced_cross_entropy_weighs_each_class_half():
    import torch
    import torch.nn.functional as F

    from vidssl.eval.scenes import balanced_cross_entropy

    logits, labels = torch.randn(5, 2), torch.tensor([1, 0, 0, 0, 1])
    ce = F.cross_entropy(logits, labels, reduction="none")
    expected = 0.5 * ce[labels == 1].sum() / (2 + 1e-5) + 0.5 * ce[labels == 0].sum() / (3 + 1e-5)
    assert float(balanced_cross_entropy(logits, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_shot_features_average_keyframes_and_are_cached(tmp_path):
    import cv2
    import torch

    from vidssl.eval.scenes import IMAGE_CONTRACT, MovieShots, extract_shot_features

    paths = []
    for k, value in enumerate((0, 100, 200)):
        path = tmp_path / f"k{k}.jpg"
        cv2.imwrite(str(path), np.full((20, 30, 3), value, np.uint8))
        paths.append(str(path))
    movie = MovieShots("m", "test", [[0, 5], [5, 9], [9, 12]], [0, 1, 0], [paths, paths[:1], []], 25.0)

    class MeanPixel(torch.nn.Module):
        embed_dim = 1
        calls = 0

        def forward(self, x):
            MeanPixel.calls += 1
            return x.mean(dim=(1, 2, 3))[:, None]

    contract = IMAGE_CONTRACT.__class__(modality="image", mean=(0.0,) * 3, std=(1.0,) * 3, crop_size=8, canvas=10)
    first = extract_shot_features(MeanPixel(), contract, [movie], torch.device("cpu"), "hash", tmp_path / "cache",
                                  progress=False)["m"]
    assert first[0, 0] == pytest.approx(100 / 255, abs=0.01) and first[1, 0] == pytest.approx(0, abs=0.01)
    assert np.isnan(first[2]).all()  # a shot without keyframes has no feature
    calls = MeanPixel.calls
    again = extract_shot_features(MeanPixel(), contract, [movie], torch.device("cpu"), "hash", tmp_path / "cache",
                                  progress=False)["m"]
    assert MeanPixel.calls == calls and np.array_equal(again, first, equal_nan=True)
    cv2.imwrite(paths[0], np.full((20, 30, 3), 50, np.uint8))  # a changed keyframe invalidates the entry
    extract_shot_features(MeanPixel(), contract, [movie], torch.device("cpu"), "hash", tmp_path / "cache",
                          progress=False)
    assert MeanPixel.calls > calls


def test_the_window_follows_the_pretrained_crn_and_a_mismatch_is_refused():
    import torch

    from vidssl.eval.scenes import SceneConfig, crn_kwargs, finetune_scene_model, fit_window_to_crn

    cfg = SceneConfig(shots_per_side=4)
    pretrained = ({}, crn_kwargs(SceneConfig(shots_per_side=2)))
    logged = []
    fitted = fit_window_to_crn(cfg, pretrained, logged.append)
    assert fitted.shots_per_side == 2 and cfg.shots_per_side == 4  # a new config; the caller's is left alone
    assert logged and "windows of 5 shots" in logged[0]
    assert fit_window_to_crn(fitted, pretrained, logged.append) is fitted and len(logged) == 1
    assert fit_window_to_crn(cfg, None) is cfg
    with pytest.raises(ValueError, match="takes windows of 5 shots, the config 9"):
        finetune_scene_model([], {}, cfg, 8, torch.device("cpu"), pretrained)
