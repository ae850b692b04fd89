"""BraVe's linear-SVM protocol on frozen features (reference: brave-gdt-stica.md A9).

Train features come from N augmented passes over the train set (one random clip per video per
pass, so N rows per video); test features are K×S fixed views per video. A ``StandardScaler`` is
fitted on the train features and applied to both; ``LinearSVC(C)`` (scikit-learn defaults:
squared hinge, L2, one-vs-rest, dual) is trained per value of C; a test video's scores are the
mean of ``decision_function`` over its views.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vidssl.eval.report import confusion_matrix, topk_accuracy

#: BraVe's README value.
DEFAULT_C = 1e-4


@dataclass
class SVMResult:
    """Numbers for one value of C. ``scores`` is ``M×num_classes`` (view-averaged decision values)."""

    C: float
    top1: float
    top5: float
    scores: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)


def _as_views(features: np.ndarray) -> np.ndarray:
    """``M×D`` -> ``M×1×D``; ``M×V×D`` unchanged."""
    features = np.asarray(features, dtype=np.float32)
    return features[:, None, :] if features.ndim == 2 else features


def svm_decision_scores(model, scaler, test_features: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean of the SVM decision values over each video's views, one column per class: ``M×num_classes``.

    Classes absent from the train set get ``-inf`` (never predicted). A binary LinearSVC returns a
    single column d (positive = ``classes_[1]``); it is expanded to ``[-d, d]``.
    """
    views = _as_views(test_features)
    count, num_views, dim = views.shape
    decision = model.decision_function(scaler.transform(views.reshape(count * num_views, dim)))
    if decision.ndim == 1:
        decision = np.stack([-decision, decision], axis=1)
    decision = decision.reshape(count, num_views, -1).mean(axis=1)
    scores = np.full((count, num_classes), -np.inf, dtype=np.float64)
    scores[:, model.classes_] = decision
    return scores


def evaluate_svm(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    C: float | Sequence[float] = DEFAULT_C,
    num_classes: int | None = None,
    max_iter: int = 1000,
    seed: int = 0,
) -> list[SVMResult]:
    """Fit StandardScaler + LinearSVC for each C and score the test set.

    Args:
        train_features: ``N×D`` (one row per augmented train clip) or ``N×P×D`` (P passes; flattened).
        train_labels: ``N`` ints.
        test_features: ``M×V×D`` (V = K temporal × S spatial views) or ``M×D``.
        test_labels: ``M`` ints.
        C: one value or a sweep.
        seed: ``random_state`` of liblinear's dual coordinate descent, which visits the samples in a
            random order; without it two runs on the same features differ whenever the solver stops
            at ``max_iter`` before converging (large C).
    Returns:
        One :class:`SVMResult` per C, in the order given.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    train = np.asarray(train_features, dtype=np.float32)
    labels = np.asarray(train_labels, dtype=np.int64)
    if train.ndim == 3:  # N videos × P passes × D: every pass is one training sample
        labels = np.repeat(labels, train.shape[1])
        train = train.reshape(-1, train.shape[-1])
    test_labels = np.asarray(test_labels, dtype=np.int64)
    num_classes = int(num_classes or max(labels.max(), test_labels.max()) + 1)
    scaler = StandardScaler().fit(train)
    scaled = scaler.transform(train)
    results = []
    for value in [C] if np.isscalar(C) else list(C):
        # dual=True with squared hinge is sklearn 0.24's (BraVe's) default; newer sklearn says "auto".
        model = LinearSVC(C=float(value), dual=True, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():  # max_iter 1000 as in the seed; non-convergence is expected at large C
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(scaled, labels)
        scores = svm_decision_scores(model, scaler, test_features, num_classes)
        results.append(
            SVMResult(
                C=float(value),
                top1=topk_accuracy(scores, test_labels, 1),
                top5=topk_accuracy(scores, test_labels, 5),
                scores=scores,
                confusion=confusion_matrix(scores.argmax(axis=1), test_labels, num_classes),
            )
        )
    return results
