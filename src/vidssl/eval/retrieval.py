"""Video clip retrieval: test videos query the train set; Recall@k as reported on UCF101/HMDB51.

Following the common protocol (Xu et al. 2019, used by FGKVMemPred's ``test_retrieval``), each
video's clip features are averaged and L2-normalised; a query scores a hit at k when any of its k
most cosine-similar train videos has the query's class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vidssl.eval.knn import pool_views

DEFAULT_KS = (1, 5, 10, 20)


def recall_at_k(
    train_features,
    train_labels,
    test_features,
    test_labels,
    ks: Sequence[int] = DEFAULT_KS,
    chunk: int = 1024,
) -> dict[str, float]:
    """``{"R@1": …, "R@5": …}``: the fraction of test queries with a same-class train video in their top k."""
    train = pool_views(train_features)
    test = pool_views(test_features)
    train_labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    test_labels = torch.as_tensor(np.asarray(test_labels), dtype=torch.long)
    max_k = min(max(ks), len(train))
    hits_first = torch.empty(len(test), dtype=torch.long)  # rank (0-based) of the first same-class neighbour
    for start in range(0, len(test), chunk):
        sims = test[start : start + chunk] @ train.T
        _, order = sims.topk(max_k, dim=1)
        same = train_labels[order] == test_labels[start : start + chunk, None]
        first = torch.where(same.any(dim=1), same.float().argmax(dim=1), torch.full((len(same),), max_k))
        hits_first[start : start + chunk] = first
    return {f"R@{k}": float((hits_first < k).float().mean()) for k in ks}
