"""Protocols on synthetic features with known answers (no video, no encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from vidssl.errors import UserError
from vidssl.eval.knn import evaluate_knn
from vidssl.eval.linear import LinearProbeConfig, evaluate_linear, warmup_cosine_lr
from vidssl.eval.report import confusion_matrix, mean_over_splits, topk_accuracy
from vidssl.eval.retrieval import recall_at_k
from vidssl.eval.splits import parse_split, run_folds
from vidssl.eval.svm import evaluate_svm


def clusters(num_classes=4, per_class=12, views=1, dim=16, spread=0.1, seed=0):
    """Well separated Gaussian clusters: features ``N×V×D`` and labels ``N``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = centres[labels][:, None, :] + spread * rng.normal(size=(len(labels), views, dim))
    return feats.astype(np.float32), labels


def noise(num_classes=4, per_class=30, views=1, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    return rng.normal(size=(len(labels), views, dim)).astype(np.float32), labels


# ----------------------------------------------------------------------------- metrics
def test_topk_accuracy_known_values():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert topk_accuracy(scores, labels, 5) == 1.0  # k clipped to the class count


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


# ----------------------------------------------------------------------------- SVM
def test_svm_separable_clusters_near_perfect():
    train, y_train = clusters(views=3, seed=0)
    test, y_test = clusters(views=4, seed=0)  # same centres, new noise (rng advances differently per shape)
    results = evaluate_svm(train, y_train, test, y_test, C=[1e-4, 1.0])
    assert [r.C for r in results] == [1e-4, 1.0]
    assert all(r.top1 == 1.0 for r in results)
    assert results[0].scores.shape == (len(y_test), 4)
    assert results[0].confusion.trace() == len(y_test)


def test_svm_noise_is_near_chance():
    train, y_train = noise(seed=1)
    test, y_test = noise(seed=2)
    (result,) = evaluate_svm(train[:, 0], y_train, test, y_test, C=1.0)
    assert 0.0 <= result.top1 <= 0.45  # chance = 0.25


def test_svm_all_zero_features_give_chance_like_brave():
    # BraVe's evaluate_test: all-zero embeddings, 3 balanced classes -> every video gets the same prediction.
    train = np.zeros((30, 8), np.float32)
    labels = np.arange(30) % 3
    (result,) = evaluate_svm(train, labels, np.zeros((30, 2, 8), np.float32), labels, C=1e-4)
    assert result.top1 == pytest.approx(1 / 3)
    assert result.top5 == 1.0


def test_svm_averages_decision_over_views():
    # One view per test video is strongly class 0, the others strongly class 1: the mean decides.
    train, y_train = clusters(num_classes=2, per_class=20, dim=4, spread=0.05, seed=3)
    centre0, centre1 = train[y_train == 0, 0].mean(0), train[y_train == 1, 0].mean(0)
    test = np.stack([np.stack([centre0, centre1, centre1]), np.stack([centre0, centre0, centre1])])
    (result,) = evaluate_svm(train, y_train, test, np.array([1, 0]), C=1.0)
    assert result.top1 == 1.0


# ----------------------------------------------------------------------------- linear
def test_linear_probe_separable_and_noise():
    train, y_train = clusters(per_class=10, views=2)
    test, y_test = clusters(per_class=5, views=3, seed=0)
    cfg = LinearProbeConfig(epochs=15, warmup_epochs=2, batch_size=16)
    assert evaluate_linear(train, y_train, test, y_test, cfg).top1 == 1.0
    n_train, yn_train = noise(seed=3)
    n_test, yn_test = noise(seed=4)
    assert evaluate_linear(n_train, yn_train, n_test, yn_test, cfg).top1 <= 0.45


def test_linear_probe_is_deterministic_given_seed():
    train, y_train = noise(per_class=8, seed=5)
    cfg = LinearProbeConfig(epochs=3, warmup_epochs=1)
    a = evaluate_linear(train, y_train, train, y_train, cfg)
    b = evaluate_linear(train, y_train, train, y_train, cfg)
    np.testing.assert_allclose(a.scores, b.scores)


def test_warmup_cosine_schedule_endpoints():
    assert warmup_cosine_lr(0, 0.1, 100, 5, 1e-4) == pytest.approx(1e-4)
    peak = 0.1 * (1 + np.cos(np.pi * 5 / 100)) / 2
    assert warmup_cosine_lr(5, 0.1, 100, 5, 1e-4) == pytest.approx(peak)
    assert warmup_cosine_lr(2.5, 0.1, 100, 5, 1e-4) == pytest.approx((1e-4 + peak) / 2)
    assert warmup_cosine_lr(100, 0.1, 100, 5, 1e-4) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- kNN
def test_knn_separable_and_noise():
    train, y_train = clusters(views=2)
    test, y_test = clusters(views=3, per_class=6, seed=0)
    assert evaluate_knn(train, y_train, test, y_test, k=5).top1 == 1.0
    n_train, yn_train = noise(seed=6)
    n_test, yn_test = noise(seed=7)
    assert evaluate_knn(n_train, yn_train, n_test, yn_test, k=5).top1 <= 0.45


def test_knn_weighted_vote_prefers_close_neighbours():
    # Query at 0°: one class-0 neighbour at 0°, two class-1 neighbours at ~80°.
    angle = np.deg2rad(80)
    train = np.array([[1, 0], [np.cos(angle), np.sin(angle)], [np.cos(angle), -np.sin(angle)]], np.float32)
    labels = np.array([0, 1, 1])
    query = np.array([[1.0, 0.0]], np.float32)
    assert evaluate_knn(train, labels, query, np.array([0]), k=3, weighted=True, temperature=0.07).top1 == 1.0
    assert evaluate_knn(train, labels, query, np.array([0]), k=3, weighted=False).top1 == 0.0


# ----------------------------------------------------------------------------- retrieval
def brute_force_recall(train, y_train, test, y_test, k):
    train = train.mean(1) / np.linalg.norm(train.mean(1), axis=1, keepdims=True)
    test = test.mean(1) / np.linalg.norm(test.mean(1), axis=1, keepdims=True)
    hits = 0
    for query, label in zip(test, y_test):
        sims = train @ query
        nearest = sorted(range(len(train)), key=lambda i: -sims[i])[:k]
        hits += any(y_train[i] == label for i in nearest)
    return hits / len(test)


def test_retrieval_matches_brute_force():
    train, y_train = noise(num_classes=5, per_class=8, views=2, dim=8, seed=8)
    test, y_test = noise(num_classes=5, per_class=4, views=3, dim=8, seed=9)
    recalls = recall_at_k(train, y_train, test, y_test, ks=(1, 5, 10, 20))
    assert list(recalls) == ["R@1", "R@5", "R@10", "R@20"]
    for k in (1, 5, 10, 20):
        assert recalls[f"R@{k}"] == pytest.approx(brute_force_recall(train, y_train, test, y_test, k))
    values = list(recalls.values())
    assert values == sorted(values)  # recall grows with k


def test_retrieval_separable_is_perfect():
    train, y_train = clusters(views=2)
    test, y_test = clusters(views=2, per_class=3, seed=0)
    assert recall_at_k(train, y_train, test, y_test)["R@1"] == 1.0


# ----------------------------------------------------------------------------- splits
def test_parse_split():
    assert parse_split("all", [1, 2, 3]) == [1, 2, 3]
    assert parse_split("2", [1, 2, 3]) == [2]
    assert parse_split("1,3", [1, 2, 3]) == [1, 3]
    with pytest.raises(UserError, match="not in this dataset"):
        parse_split("4", [1, 2, 3])
    with pytest.raises(UserError, match="fold number"):
        parse_split("first", [1, 2, 3])


def test_run_folds_reports_each_and_mean():
    numbers = {1: {"top1": 0.5, "R": {"R@1": 0.2}}, 2: {"top1": 0.7, "R": {"R@1": 0.4}}, 3: {"top1": 0.9, "R": {"R@1": 0.6}}}
    headline, per_split = run_folds([1, 2, 3], lambda fold: numbers[fold])
    assert per_split == numbers
    assert headline["top1"] == pytest.approx(0.7)
    assert headline["R"]["R@1"] == pytest.approx(0.4)
    single, per = run_folds([2], lambda fold: numbers[fold])
    assert single == numbers[2] and list(per) == [2]
    assert mean_over_splits({}) == {}
