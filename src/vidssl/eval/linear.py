"""Linear probe on frozen features (FGKVMemPred's protocol, bassl-fgkvmem-bevt.md §2.8).

The seed trains one fully-connected layer on detached pooled features: SGD lr 0.1, momentum 0.9,
weight decay 0, 5 linear warmup epochs from 1e-4 then cosine to 0, 100 epochs, batch 32, no
dropout; test = 10×3 views with softmax scores summed (argmax of the sum = argmax of the mean).

Here the features are extracted once and cached (:mod:`vidssl.eval.features`), and the probe is a
plain PyTorch loop on those arrays — a few thousand tiny steps, no need for an engine.

Departure from the seed: the seed's backbone BN ran in train mode during the probe (its running
statistics drifted with the probe data). A frozen, cached feature has no BN to run, so by default
we standardise the features with the train-set mean/std (a non-affine BatchNorm in front of the fc,
as MAE's linear probe does). ``standardize=False`` feeds raw features.

The "augmented clips" variant (frozen backbone, new random augmented clips every epoch) is the
fine-tuning routine with the backbone frozen: :data:`vidssl.eval.finetune.FINETUNE_PRESETS`
``"fgkvmem_linear"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vidssl.eval.report import confusion_matrix, topk_accuracy


@dataclass
class LinearProbeConfig:
    """Hyper-parameters of the feature linear probe (defaults = FGKVMemPred's linear configs)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: float = 5.0
    warmup_start_lr: float = 1e-4
    standardize: bool = True
    seed: int = 0


def warmup_cosine_lr(epoch: float, base_lr: float, total_epochs: float, warmup_epochs: float, warmup_start_lr: float) -> float:
    """PySlowFast's ``cosine`` policy with linear warmup, at fractional ``epoch``
    (:func:`vidssl.optim.slowfast_cosine`, the schedule pretraining uses, counted in epochs).

    Cosine: ``base_lr·(1+cos(π·epoch/total))/2``; during warmup the lr rises linearly from
    ``warmup_start_lr`` to the cosine value at ``warmup_epochs``.
    """
    from vidssl.optim import slowfast_cosine

    return slowfast_cosine(epoch, total_epochs, warmup_epochs, base_lr, warmup_start_lr)


@dataclass
class LinearResult:
    top1: float
    top5: float
    train_loss: float
    scores: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)


def _train_rows(features: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``N×V×D`` train features -> ``(N·V)×D`` rows, every view one sample with its video's label."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if x.ndim == 3:
        y = y.repeat_interleave(x.shape[1])
        x = x.reshape(-1, x.shape[-1])
    return x, y


def evaluate_linear(
    train_features,
    train_labels,
    test_features,
    test_labels,
    config: LinearProbeConfig | None = None,
    num_classes: int | None = None,
) -> LinearResult:
    """Train a linear classifier on ``train_features`` (``N×D`` or ``N×V×D``) and score ``test_features``.

    Test scores are the softmax probabilities averaged over each video's views: ``M×num_classes``.
    """
    config = config or LinearProbeConfig()
    x, y = _train_rows(train_features, train_labels)
    test = torch.as_tensor(np.asarray(test_features), dtype=torch.float32)
    if test.ndim == 2:
        test = test[:, None, :]
    test_labels = np.asarray(test_labels, dtype=np.int64)
    num_classes = int(num_classes or max(int(y.max()), int(test_labels.max())) + 1)
    if config.standardize:
        mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
        x = (x - mean) / std
        test = (test - mean) / std

    generator = torch.Generator().manual_seed(config.seed)
    head = nn.Linear(x.shape[1], num_classes)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        head.reset_parameters()
    optimizer = torch.optim.SGD(head.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(x) / config.batch_size))
    loss_value = float("nan")
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            lr = warmup_cosine_lr(epoch + step / steps_per_epoch, config.lr, config.epochs, config.warmup_epochs, config.warmup_start_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = nn.functional.cross_entropy(head(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach())
        loss_value = running / steps_per_epoch
    with torch.no_grad():
        probs = head(test).softmax(dim=-1).mean(dim=1).numpy()
    return LinearResult(
        top1=topk_accuracy(probs, test_labels, 1),
        top5=topk_accuracy(probs, test_labels, 5),
        train_loss=loss_value,
        scores=probs,
        confusion=confusion_matrix(probs.argmax(axis=1), test_labels, num_classes),
    )
