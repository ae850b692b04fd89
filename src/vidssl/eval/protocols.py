"""One orchestration for the evaluation protocols, shared by ``vidssl eval`` and ``vidssl demo``.

A *protocol spec* says what to measure: :class:`LinearSpec` (linear probe on frozen features),
:class:`SVMSpec` (BraVe's linear SVM), :class:`KNNSpec` (cosine kNN), :class:`RetrievalSpec`
(R@k) or :class:`FinetuneSpec` (end-to-end fine-tuning, or the linear probe on augmented clips).
:class:`FeatureSource` extracts the features a feature spec needs — once per (split, fold,
passes), for one encoder or several side by side on the same decoded batch — and
:func:`run_feature_protocol` scores them. :func:`evaluate` runs a spec over folds for one encoder
(``vidssl eval``); ``vidssl demo`` calls :func:`run_feature_protocol` for its encoders directly.

Train features of the feature specs: ``passes`` augmented passes (one random clip per video per
pass), or the K×S test views of the train videos when ``passes = 0``. ``passes=None`` takes the
default of :meth:`train_passes`: the SVM ``max(protocol.train_passes, 1)`` (BraVe trains on
augmented clips), the linear probe ``protocol.train_passes``, kNN and retrieval 0.

Every fold's numbers carry ``test_videos``, ``train_videos`` and ``excluded_videos`` next to the
accuracies: unreadable videos are excluded, never replaced (:mod:`vidssl.eval.exclusion`), and
:attr:`FoldResult.excluded` names them.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vidssl.eval.exclusion import DEFAULT_MAX_UNREADABLE, excluded_list, video_counts
from vidssl.eval.features import EncoderInfo, FeatureSet, ViewProtocol, extract_features
from vidssl.eval.linear import LinearProbeConfig

__all__ = ["FoldResult", "Extraction", "SideBySide", "FeatureSource", "LinearSpec", "SVMSpec", "KNNSpec",
           "RetrievalSpec", "FinetuneSpec", "run_feature_protocol", "evaluate", "Evaluation"]


@dataclass
class FoldResult:
    """The numbers of one protocol on one fold (fractions in [0, 1]) and its confusion matrix (None for retrieval);
    ``excluded``: the unreadable videos left out (``{"fold", "set", "path", "reason"}``)."""

    numbers: dict[str, Any]
    confusion: np.ndarray | None = field(default=None, repr=False)
    excluded: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Extraction:
    """How features are extracted, for every protocol of a run (see :func:`~vidssl.eval.features.extract_features`)."""

    cache_dir: str | Path | None = None
    device: str | None = "auto"
    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    max_unreadable: float = DEFAULT_MAX_UNREADABLE  # fraction of a split that may be unreadable (excluded)


# ----------------------------------------------------------------------------- features
class SideBySide(nn.Module):
    """Several frozen encoders on the same decoded batch: ``forward(x)`` = their embeddings concatenated.

    ``vidssl demo`` decodes every video once for the pretrained and the random encoder (decoding, not
    the tiny encoders, dominates on a CPU); :class:`FeatureSource` cuts the features apart again.
    """

    def __init__(self, encoders: Sequence[nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([encoder(x) for encoder in self.encoders], dim=1)


class FeatureSource:
    """Features of ``encoders`` (``{name: (module, EncoderInfo)}``) under ``protocol``, extracted once per
    (split, fold, passes) and kept in memory; several encoders share one decode (:class:`SideBySide`).

    ``contract`` (a dict or ``"none"``) is what the features' meta records as the input contract
    (by default the one encoder's own).
    """

    def __init__(self, encoders: Mapping[str, tuple[nn.Module, EncoderInfo]], manifest, protocol: ViewProtocol,
                 extraction: Extraction | None = None, contract: dict | str | None = None,
                 extract: Callable[..., FeatureSet] | None = None):
        if not encoders:
            raise ValueError("FeatureSource needs at least one encoder")
        self.names = list(encoders)
        self.manifest, self.protocol = manifest, protocol
        self.extraction = extraction or Extraction()
        self._extract = extract
        modules = [encoders[n][0] for n in self.names]
        infos = [encoders[n][1] for n in self.names]
        if len(modules) == 1:
            self.encoder, self.info = modules[0], infos[0]
        else:
            self.encoder = SideBySide(modules).eval()
            digest = hashlib.sha256("+".join(i.hash for i in infos).encode()).hexdigest()[:24]
            self.info = EncoderInfo("+".join(i.source for i in infos), digest, "+".join(i.backbone for i in infos))
        if contract is not None:
            self.info = EncoderInfo(self.info.source, self.info.hash, self.info.backbone, contract)
        self.dims = [int(m.embed_dim) for m in modules] if len(modules) > 1 else None
        self._memo: dict[tuple[str, int, int], dict[str, FeatureSet]] = {}

    def features(self, split: str, fold: int, passes: int = 0) -> dict[str, FeatureSet]:
        """``{encoder name: FeatureSet}`` of ``split`` of ``fold`` (``passes`` augmented passes, or the test views)."""
        key = (split, int(fold), int(passes))
        if key not in self._memo:
            e = self.extraction
            extract = self._extract or extract_features  # looked up at call time (tests replace it)
            joint = extract(self.encoder, self.info, self.manifest, self.protocol, split, fold, passes=passes,
                            cache_dir=e.cache_dir, device=e.device, batch_size=e.batch_size,
                            num_workers=e.num_workers, seed=e.seed, progress=e.progress,
                            max_unreadable=e.max_unreadable)
            self._memo[key] = self._split(joint)
        return self._memo[key]

    def _split(self, joint: FeatureSet) -> dict[str, FeatureSet]:
        if self.dims is None:
            return {self.names[0]: joint}
        bounds = np.cumsum([0, *self.dims])
        if joint.features.shape[-1] != bounds[-1]:
            raise ValueError(f"side-by-side features have {joint.features.shape[-1]} dims, expected {bounds[-1]}")
        return {name: FeatureSet(joint.features[..., a:b], joint.labels, joint.indices, dict(joint.meta))
                for name, a, b in zip(self.names, bounds[:-1], bounds[1:])}


# ----------------------------------------------------------------------------- feature protocols
@dataclass
class LinearSpec:
    """Linear probe on frozen features (FGKVMemPred, :func:`vidssl.eval.linear.evaluate_linear`)."""

    config: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    passes: int | None = None
    name: ClassVar[str] = "linear"

    def train_passes(self, protocol: ViewProtocol) -> int:
        return protocol.train_passes if self.passes is None else self.passes

    def describe(self, protocol: ViewProtocol) -> dict[str, Any]:
        from vidssl.config import to_dict

        return {"mode": "features", "linear": to_dict(self.config), "train_passes": self.train_passes(protocol)}

    def score(self, train: FeatureSet, test: FeatureSet, num_classes: int) -> FoldResult:
        from vidssl.eval.linear import evaluate_linear

        result = evaluate_linear(train.features, train.labels, test.features, test.labels, self.config, num_classes)
        return FoldResult({"top1": result.top1, "top5": result.top5, "train_loss": result.train_loss}, result.confusion)


@dataclass
class SVMSpec:
    """BraVe's StandardScaler + LinearSVC, one or several C (:func:`vidssl.eval.svm.evaluate_svm`)."""

    C: Sequence[float] = (1e-4,)
    passes: int | None = None
    name: ClassVar[str] = "svm"

    def train_passes(self, protocol: ViewProtocol) -> int:
        return max(protocol.train_passes, 1) if self.passes is None else self.passes

    def describe(self, protocol: ViewProtocol) -> dict[str, Any]:
        return {"C": [float(c) for c in self.C], "train_passes": self.train_passes(protocol)}

    def score(self, train: FeatureSet, test: FeatureSet, num_classes: int) -> FoldResult:
        from vidssl.eval.svm import evaluate_svm

        results = evaluate_svm(train.features, train.labels, test.features, test.labels, C=list(self.C),
                               num_classes=num_classes)
        numbers: dict[str, Any] = {"top1": results[0].top1, "top5": results[0].top5, "C": results[0].C}
        if len(results) > 1:
            numbers["sweep"] = {f"C={r.C:g}": {"top1": r.top1, "top5": r.top5} for r in results}
            numbers["top1_best_C_on_test"] = max(r.top1 for r in results)
        return FoldResult(numbers, results[0].confusion)


@dataclass
class KNNSpec:
    """Cosine kNN of the test views' mean against the train videos' (:func:`vidssl.eval.knn.evaluate_knn`)."""

    k: int = 20
    temperature: float = 0.07
    weighted: bool = True
    name: ClassVar[str] = "knn"

    def train_passes(self, protocol: ViewProtocol) -> int:
        return 0

    def describe(self, protocol: ViewProtocol) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature, "weighted": self.weighted}

    def score(self, train: FeatureSet, test: FeatureSet, num_classes: int) -> FoldResult:
        from vidssl.eval.knn import evaluate_knn

        result = evaluate_knn(train.features, train.labels, test.features, test.labels, k=self.k,
                              temperature=self.temperature, weighted=self.weighted, num_classes=num_classes)
        numbers = {"top1": result.top1, "top5": result.top5}
        if result.k != self.k:  # fewer train videos than k: say which k the numbers are for
            numbers["k_used"] = result.k
        return FoldResult(numbers, result.confusion)


@dataclass
class RetrievalSpec:
    """Test videos query the train videos: R@k (:func:`vidssl.eval.retrieval.recall_at_k`)."""

    ks: Sequence[int] = (1, 5, 10, 20)
    name: ClassVar[str] = "retrieval"

    def train_passes(self, protocol: ViewProtocol) -> int:
        return 0

    def describe(self, protocol: ViewProtocol) -> dict[str, Any]:
        return {"ks": list(self.ks)}

    def score(self, train: FeatureSet, test: FeatureSet, num_classes: int) -> FoldResult:
        from vidssl.eval.retrieval import recall_at_k

        return FoldResult(recall_at_k(train.features, train.labels, test.features, test.labels, ks=list(self.ks)))


FeatureSpec = LinearSpec | SVMSpec | KNNSpec | RetrievalSpec


def run_feature_protocol(spec: FeatureSpec, source: FeatureSource, fold: int, num_classes: int) -> dict[str, FoldResult]:
    """Score ``spec`` on ``fold`` for every encoder of ``source``: ``{encoder name: FoldResult}``, each with
    the number of videos evaluated and excluded."""
    train = source.features("train", fold, spec.train_passes(source.protocol))
    test = source.features("test", fold)
    results = {}
    for name in source.names:
        result = spec.score(train[name], test[name], num_classes)
        result.numbers.update(video_counts(train[name].meta, test[name].meta, len(train[name].labels),
                                           len(test[name].labels)))
        result.excluded = excluded_list({"train": train[name].meta, "test": test[name].meta}, fold)
        results[name] = result
    return results


# ----------------------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneSpec:
    """End-to-end fine-tuning, or the frozen linear probe on augmented clips (:func:`vidssl.eval.finetune.finetune`).

    ``per_epoch``: also report ``top1_per_epoch`` (``vidssl eval finetune``).
    """

    config: Any  # vidssl.eval.finetune.FinetuneConfig
    per_epoch: bool = True
    name: ClassVar[str] = "finetune"

    def describe(self, protocol: ViewProtocol) -> dict[str, Any]:
        from vidssl.config import to_dict

        return {"finetune": to_dict(self.config)}

    def run(self, encoder: nn.Module, manifest, protocol: ViewProtocol, fold: int, *, out_dir: str | Path,
            device: str | None, progress: bool, max_unreadable: float = DEFAULT_MAX_UNREADABLE) -> FoldResult:
        from vidssl.eval.finetune import finetune

        result = finetune(copy.deepcopy(encoder), manifest, fold, self.config, out_dir=out_dir, device=device,
                          protocol=protocol, progress=progress, max_unreadable=max_unreadable)
        numbers = result.numbers()
        if self.per_epoch:
            numbers["top1_per_epoch"] = {str(k): v for k, v in result.top1_per_epoch.items()}
        return FoldResult(numbers, result.confusion, result.excluded)


# ----------------------------------------------------------------------------- over folds
@dataclass
class Evaluation:
    """``headline`` numbers (one fold's, or the mean over folds), ``per_split`` numbers and confusion matrices."""

    headline: dict[str, Any]
    per_split: dict[int, dict[str, Any]]
    confusions: dict[int, np.ndarray | None]
    excluded: list[dict[str, Any]] = field(default_factory=list)

    def confusion_images(self) -> dict[str, np.ndarray]:
        """Matrices by image suffix: ``""`` for one fold (``confusion.png``), ``"splitN"`` for several."""
        if len(self.per_split) == 1:
            (fold,) = self.per_split
            matrix = self.confusions.get(fold)
            return {"": matrix} if matrix is not None else {}
        return {f"split{f}": m for f, m in self.confusions.items() if m is not None}


def evaluate(spec: FeatureSpec | FinetuneSpec, encoder: nn.Module, info: EncoderInfo, manifest, protocol: ViewProtocol,
             folds: Sequence[int], extraction: Extraction | None = None, *, out_dir: str | Path | None = None,
             extract: Callable[..., FeatureSet] | None = None) -> Evaluation:
    """Run ``spec`` for one encoder on every fold (``vidssl eval <protocol>``)."""
    from vidssl.eval.splits import run_folds

    extraction = extraction or Extraction()
    num_classes = len(manifest.class_names)
    confusions: dict[int, np.ndarray | None] = {}
    if isinstance(spec, FinetuneSpec):
        if out_dir is None:
            raise ValueError("fine-tuning needs out_dir (Lightning's metrics.csv goes there)")

        def fold_result(fold: int) -> FoldResult:
            return spec.run(encoder, manifest, protocol, fold, out_dir=out_dir, device=extraction.device,
                            progress=extraction.progress, max_unreadable=extraction.max_unreadable)
    else:
        source = FeatureSource({"encoder": (encoder, info)}, manifest, protocol, extraction, extract=extract)

        def fold_result(fold: int) -> FoldResult:
            return run_feature_protocol(spec, source, fold, num_classes)["encoder"]

    excluded: list[dict[str, Any]] = []

    def one_fold(fold: int) -> dict[str, Any]:
        result = fold_result(fold)
        confusions[fold] = result.confusion
        excluded.extend(result.excluded)
        return result.numbers

    headline, per_split = run_folds(folds, one_fold)
    for key in ("test_videos", "train_videos", "excluded_videos"):  # counts add up over folds (not a mean)
        if len(per_split) > 1 and all(key in numbers for numbers in per_split.values()):
            headline[key] = sum(int(numbers[key]) for numbers in per_split.values())
    return Evaluation(headline, per_split, confusions, excluded)
