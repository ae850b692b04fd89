"""Cosine k-nearest-neighbour classification on frozen features.

A test video's feature is the mean of its view features, L2-normalised; train features likewise.
Each of the ``k`` nearest train videos votes for its class with weight ``exp(cos / T)`` (the
weighted vote of Wu et al. 2018 / DINO), or weight 1 when ``weighted=False``.

Deterministic under float noise: similarities are computed in float64 and rounded to
:data:`SIMILARITY_DECIMALS` decimals, and neighbours with equal (rounded) similarity are ranked by
train index (stable sort), so two extractions of the same encoder whose features differ in the last
float32 bits (thread scheduling of the convolutions) give the same neighbours and the same accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vidssl.eval.report import confusion_matrix, topk_accuracy


#: Cosine similarities are rounded to this many decimals before ranking (float32 features carry ~7).
SIMILARITY_DECIMALS = 5


def pool_views(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``M×V×D`` (or ``M×D``) -> ``M×D``: mean over views, then L2-normalised (float64)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if x.ndim == 3:
        x = x.mean(dim=1)
    return torch.nn.functional.normalize(x, dim=1)


@dataclass
class KNNResult:
    k: int
    top1: float
    top5: float
    scores: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)


def knn_scores(
    train_features,
    train_labels,
    test_features,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    weighted: bool = True,
    chunk: int = 1024,
) -> np.ndarray:
    """Class scores ``M×num_classes`` from the (weighted) votes of each query's k nearest train items.

    Neighbours are the k highest rounded similarities, equal ones in train order (see module doc).
    """
    train = pool_views(train_features)
    test = pool_views(test_features)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    k = min(k, len(train))
    out = torch.zeros(len(test), num_classes, dtype=torch.float64)
    for start in range(0, len(test), chunk):
        sims = torch.round(test[start : start + chunk] @ train.T, decimals=SIMILARITY_DECIMALS)
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]
        top_sims, top_index = sims.gather(1, order), order
        weights = (top_sims / temperature).exp() if weighted else torch.ones_like(top_sims)
        out[start : start + chunk].scatter_add_(1, labels[top_index], weights)
    return out.numpy()


def evaluate_knn(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k: int = 20,
    temperature: float = 0.07,
    weighted: bool = True,
    num_classes: int | None = None,
) -> KNNResult:
    """Cosine kNN top-1/top-5 of the test set against the train set."""
    train_labels = np.asarray(train_labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    num_classes = int(num_classes or max(train_labels.max(), test_labels.max()) + 1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(train_labels))  # the k actually used (KNNSpec reports it when it is smaller)
    scores = knn_scores(train_features, train_labels, test_features, num_classes, k, temperature, weighted)
    return KNNResult(
        k=k,
        top1=topk_accuracy(scores, test_labels, 1),
        top5=topk_accuracy(scores, test_labels, 5),
        scores=scores,
        confusion=confusion_matrix(scores.argmax(axis=1), test_labels, num_classes),
    )
