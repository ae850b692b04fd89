"""Frozen-encoder features under a view protocol, cached on disk.

The view protocols themselves (:class:`ViewProtocol`, :data:`PROTOCOLS`, :func:`protocol_for`, the
device-side views) live in :mod:`vidssl.eval.views` and are re-exported here.
:func:`extract_features` runs the encoder (eval mode, no grad, bf16 autocast on GPU) over a dataset
and returns a :class:`FeatureSet` with features ``N×V×D`` (V = K·S test views, or N augmented
passes of one random clip) and labels ``N``.

Features are cached under ``cache_dir/<key>/`` where ``key`` (:func:`cache_key`) hashes the
encoder's checkpoint hash, the full view protocol (geometry and normalisation), the dataset
(:func:`dataset_fingerprint`: root, fold, split, every file's path, label, size and mtime), the
passes and the seed, so a rewritten video or another normalisation never reads stale features.
Extraction writes chunks of ``chunk_size`` videos as it goes (``part_00000.npz``…), so a killed run
resumes at the first missing chunk; the finished set is ``features.npz`` + ``meta.json``.

A video that cannot be read is **excluded, never replaced** (:mod:`vidssl.eval.exclusion`): its row
is absent, ``indices`` names the rows present, and ``meta`` says ``videos`` (in the split),
``evaluated`` and ``excluded`` (path -> reason); more than ``max_unreadable`` of the split
unreadable is a :class:`~vidssl.errors.DataError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vidssl.errors import UserError
from vidssl.eval.cache import discard_entry, load_part, save_part, savez
from vidssl.eval.exclusion import DEFAULT_MAX_UNREADABLE, align_passes, check_exclusions
from vidssl.progress import progress_bar
from vidssl.eval.views import (  # noqa: F401 (re-exported: vidssl.eval.features is where callers import them)
    CONTRACT_GEOMETRY,
    PROTOCOLS,
    TRAIN_AUGMENTS,
    CropLayout,
    ProtocolChoice,
    ViewProtocol,
    build_train_augment,
    contract_of,
    eval_views,
    get_protocol,
    protocol_for,
)


# ----------------------------------------------------------------------------- encoders
@dataclass
class EncoderInfo:
    """Where an evaluated encoder came from: ``source`` (path or ``random:<backbone>``) and a content hash."""

    source: str
    hash: str
    backbone: str = ""
    contract: dict[str, Any] | str = "none"  # the encoder's input contract (InputContract.to_dict()) or "none"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _weights_file(path: Path) -> Path:
    """The file whose bytes identify a checkpoint: ``DIR/encoder.safetensors`` for a run dir."""
    if path.is_dir():
        candidate = path / "encoder.safetensors"
        if not candidate.is_file():
            raise UserError(f"'{path}' has no encoder.safetensors (is it a `vidssl pretrain` run directory?)")
        return candidate
    return path


def load_eval_encoder(
    checkpoint: str | Path | None = None,
    backbone: str | None = None,
    seed: int = 0,
    backbone_kwargs: dict[str, Any] | None = None,
    random_init: bool = False,
) -> tuple[torch.nn.Module, EncoderInfo]:
    """A frozen encoder in eval mode: from a checkpoint (run dir / .safetensors / .ckpt) or random init.

    ``random_init`` with a ``checkpoint``: the checkpoint's architecture and input contract with random
    weights drawn under ``seed``, i.e. "the same encoder randomly initialised", fed exactly the views the
    pretrained one gets. (``backbone`` alone has no contract, so its views are a protocol's defaults, which
    may differ from the pretrained encoder's in crop size, frame rate and normalisation.)

    A missing path is a :class:`UserError`; an unknown backbone name a :class:`ConfigError`.
    """
    from vidssl import models

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise UserError(f"checkpoint '{checkpoint}' does not exist")
        weights = _weights_file(path)
        encoder = models.load_encoder(path)
        contract = contract_of(encoder)
        if random_init:
            return random_twin(encoder, path, seed)
        info = EncoderInfo(str(path), file_sha256(weights), getattr(encoder, "backbone_name", "") or "",
                           contract.to_dict() if contract is not None else "none")
    elif random_init:
        raise UserError("random init with the architecture and views of a run needs --checkpoint RUN")
    elif backbone:
        kwargs = dict(backbone_kwargs or {})
        encoder = _seeded_random_encoder(backbone, kwargs, seed)
        info = EncoderInfo(f"random:{backbone}", _random_hash(backbone, kwargs, seed), backbone)
    else:
        raise UserError("give --checkpoint PATH (a pretrain run dir or encoder file) or --backbone NAME (random init)")
    return _frozen(encoder, checkpoint), info


def random_twin(trained: torch.nn.Module, source: str | Path, seed: int) -> tuple[torch.nn.Module, EncoderInfo]:
    """``trained``'s backbone (name, builder arguments, input contract) with random weights drawn under ``seed``,
    frozen: "the same encoder randomly initialised", which the views of ``trained``'s contract feed alike.
    Its weights are those of ``load_eval_encoder(backbone=name, backbone_kwargs=kwargs, seed=seed)``."""
    name = getattr(trained, "backbone_name", None)
    if not name:
        raise UserError(f"the encoder in '{source}' does not say which backbone it is, so it has no random twin")
    kwargs = dict(getattr(trained, "backbone_kwargs", {}) or {})
    contract = contract_of(trained)
    encoder = _seeded_random_encoder(name, kwargs, seed)
    encoder.input_contract = contract
    contract_dict = contract.to_dict() if contract is not None else "none"
    info = EncoderInfo(f"random:{name} (architecture and views of {source})",
                       _random_hash(name, kwargs, seed, contract=contract_dict), name, contract_dict)
    return _frozen(encoder, source), info


def _seeded_random_encoder(name: str, kwargs: dict[str, Any], seed: int) -> torch.nn.Module:
    """Backbone ``name`` with the random weights that ``seed`` draws (the global RNG is left as it was)."""
    from vidssl import models

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return models.build_random_encoder(name, **kwargs)


def _random_hash(name: str, kwargs: dict[str, Any], seed: int, **extra: Any) -> str:
    """Content hash of a random encoder (feature-cache key): what builds it, and ``extra`` (e.g. its contract)."""
    spec = json.dumps({"backbone": name, "kwargs": kwargs, "seed": seed, **extra}, sort_keys=True)
    return "random-" + hashlib.sha256(spec.encode()).hexdigest()[:24]


def _frozen(encoder: torch.nn.Module, source) -> torch.nn.Module:
    """``encoder`` in eval mode without gradients; non-finite weights are refused (a diverged run)."""
    from vidssl import models

    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    bad = models.first_nonfinite(encoder.state_dict())
    if bad is not None:  # its scores would be chance presented as a normal result
        raise UserError(f"'{source}' has non-finite weights ('{bad}' holds NaN or inf): the run that wrote it "
                        "diverged; retrain it (lower optim.lr or set optim.grad_clip) instead of evaluating it")
    return encoder


def pick_device(name: str | None = None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- datasets
def open_dataset(root: str | Path):
    """The manifest of a dataset root (split files re-read; probes of unchanged files reused from
    ``ROOT/vidssl_manifest.json``), or of a manifest JSON file given directly.

    A missing root, an unknown layout or a dataset without train/test split files is a UserError.
    """
    from vidssl.data.index import build_manifest, load_manifest

    root = Path(root)
    if not root.exists():
        raise UserError(f"data root '{root}' does not exist")
    manifest = load_manifest(root) if root.is_file() else build_manifest(root, format="auto")
    if not manifest.folds or not any(s in ("train", "test") for r in manifest.records for s in r.splits.values()):
        raise UserError(f"'{root}' has no train/test split files (expected e.g. ucfTrainTestlist/trainlist01.txt)")
    return manifest


def file_stamp(manifest, record) -> tuple[Any, Any]:
    """``(size, mtime_ns)`` of a record's file from ``os.stat``; the manifest's probed ``(size, mtime)``
    when the file cannot be stat'ed (a manifest JSON read away from its videos)."""
    resolve = getattr(manifest, "resolve", None)
    path = resolve(record) if resolve is not None else os.path.join(str(getattr(manifest, "root", "")), record.path)
    try:
        stat = os.stat(path)
    except OSError:
        return getattr(record, "size", None), getattr(record, "mtime", None)
    return stat.st_size, stat.st_mtime_ns


def dataset_fingerprint(manifest, split: str, fold: int) -> str:
    """Hash of the videos of one split of one fold: root, and each file's path, label, size and mtime.

    Touching or rewriting one video (or moving the dataset) gives another fingerprint, hence another
    cache key: features are never read back for files that changed.
    """
    subset = manifest.subset(split=split, fold=fold)
    digest = hashlib.sha256(f"{split}:{fold}:{getattr(manifest, 'root', '')}".encode())
    for record in subset.records:
        size, mtime = file_stamp(subset, record)
        digest.update(f"{record.path}|{record.label}|{size}|{mtime}\n".encode())
    return digest.hexdigest()[:24]


def clip_plan(protocol: ViewProtocol, augmented: bool):
    """The clip plan of a protocol: K uniformly spaced clips of view ``"clip"`` (test views), or one
    random clip (augmented train passes)."""
    from vidssl.data.sampling import RandomClipPlan, UniformClipsPlan, ViewSpec

    view = ViewSpec("clip", num_frames=protocol.num_frames, stride=protocol.stride, fps=protocol.fps,
                    canvas=protocol.canvas)
    return RandomClipPlan(view) if augmented else UniformClipsPlan(view, num_clips=protocol.temporal_clips)


def make_dataset(manifest, protocol: ViewProtocol, split: str, fold: int, augmented: bool, seed: int = 0):
    """The :class:`~vidssl.data.datasets.VideoDataset` a protocol reads (:func:`clip_plan`).

    Test views: K uniformly spaced clips per video (``K×T×H×W×C`` under view ``"clip"``); augmented
    train passes: one random clip (``T×H×W×C``). An unreadable video is excluded, never replaced by
    another (``on_unreadable="exclude"``; :mod:`vidssl.eval.exclusion`).
    """
    from vidssl.data.datasets import VideoDataset

    return VideoDataset(manifest, clip_plan(protocol, augmented), split=split, fold=fold, seed=seed,
                        on_unreadable="exclude")


# ----------------------------------------------------------------------------- extraction
@dataclass
class FeatureSet:
    """Features of one split: ``features`` float32 ``N×V×D``, ``labels`` int64 ``N``, ``indices`` int64 ``N``."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        from vidssl.io import atomic_write

        directory = Path(directory)
        arrays = {"features": self.features, "labels": self.labels, "indices": self.indices}
        atomic_write(directory / "features.npz", lambda tmp: savez(tmp, arrays),
                     sum(a.nbytes for a in arrays.values()), "features")
        atomic_write(directory / "meta.json", lambda tmp: tmp.write_text(json.dumps(self.meta, indent=2, default=str)))
        return directory / "features.npz"

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureSet":
        directory = Path(directory)
        with np.load(directory / "features.npz") as data:
            arrays = {k: data[k] for k in ("features", "labels", "indices")}
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(arrays["features"], arrays["labels"], arrays["indices"], meta)


#: Version of what a cache entry's rows mean; 2: unreadable videos excluded (entries written before
#: could hold a substitute video's row, so they are never read again).
CACHE_FORMAT = 2


def cache_key(encoder_hash: str, protocol: ViewProtocol, dataset_id: str, split: str, fold: int, passes: int, seed: int) -> str:
    """Hex key naming a cache entry; any change of encoder, protocol (any field, normalisation included),
    data (``dataset_id`` from :func:`dataset_fingerprint`), split, fold, passes or seed changes it."""
    spec = json.dumps(
        {"encoder": encoder_hash, "protocol": protocol.describe(), "dataset": dataset_id, "split": split,
         "fold": fold, "passes": passes, "seed": seed, "format": CACHE_FORMAT},
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def clip_batch(batch: dict) -> torch.Tensor:
    """The uint8 clips of view ``"clip"`` in a collated batch (``batch["clips"]``; older items: ``batch["video"]``)."""
    views = batch["clips"] if "clips" in batch else batch["video"]
    return views["clip"]


@torch.no_grad()
def encode_batch(
    encoder: torch.nn.Module,
    video: torch.Tensor,
    views: Callable[..., torch.Tensor],
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Embed one batch -> float32 ``B×V×D`` (CPU).

    ``views`` is :func:`eval_views` (uint8 ``B×K×T×H×W×C`` -> ``B×V×C×T×h×w``) or a train augmentation
    from :func:`build_train_augment` (uint8 ``B×T×H×W×C`` -> ``B×C×T×h×w``, V = 1).
    """
    video = video.to(device, non_blocking=True)
    inputs = views(video, generator=generator)
    if inputs.dim() == 5:
        inputs = inputs.unsqueeze(1)
    batch, count = inputs.shape[:2]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        embedding = encoder(inputs.flatten(0, 1))
    return embedding.float().reshape(batch, count, -1).cpu()


def _extract_range(encoder, dataset, indices, views, device, batch_size, num_workers, generator, bar) -> dict[str, Any]:
    """Features ``n×V×D``, labels and record indices of the items ``indices`` of ``dataset`` that
    could be read, and the unreadable ones (``{"unreadable": {path: reason}}``)."""
    from torch.utils.data import DataLoader, Subset

    from vidssl.data.datasets import collate, worker_context

    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate,
                        multiprocessing_context=worker_context(num_workers))
    features, labels, kept, unreadable = [], [], [], {}
    for batch in loader:
        for _, path, reason in batch.get("unreadable", ()):
            unreadable[path] = reason
        bar.advance(len(batch.get("unreadable", ())))
        if "clips" not in batch and "video" not in batch:
            continue  # every item of the batch was unreadable
        video = clip_batch(batch)
        features.append(encode_batch(encoder, video, views, device, generator).numpy())
        labels.append(np.asarray(batch["label"]))
        kept.append(np.asarray(batch["index"]))
        bar.advance(len(video))
    if not features:
        return {"features": np.zeros((0, 0, 0), np.float32), "labels": np.zeros(0, np.int64),
                "indices": np.zeros(0, np.int64), "unreadable": unreadable}
    return {"features": np.concatenate(features), "labels": np.concatenate(labels),
            "indices": np.concatenate(kept).astype(np.int64), "unreadable": unreadable}


def extract_features(
    encoder: torch.nn.Module,
    encoder_info: EncoderInfo,
    manifest,
    protocol: ViewProtocol,
    split: str = "test",
    fold: int = 1,
    *,
    passes: int = 0,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    chunk_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    dataset_factory: Callable[..., Any] = make_dataset,
    max_unreadable: float = DEFAULT_MAX_UNREADABLE,
) -> FeatureSet:
    """Features of ``manifest``'s ``split`` of ``fold`` under ``protocol`` (cached when ``cache_dir`` is set).

    ``passes = 0``: K×S test views per video -> ``N×(K·S)×D``. ``passes = P > 0``: P augmented passes,
    one random augmented clip per video per pass -> ``N×P×D`` (pass p uses seed ``seed + p``).
    Unreadable videos are excluded (a video unreadable in any pass has no row); more than
    ``max_unreadable`` of the split excluded raises :class:`~vidssl.errors.DataError`.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    encoder = encoder.to(device).eval()
    dataset_id = dataset_fingerprint(manifest, split, fold)
    key = cache_key(encoder_info.hash, protocol, dataset_id, split, fold, passes, seed)
    meta = {"key": key, "encoder": encoder_info.as_dict(), "input_contract": encoder_info.contract,
            "protocol": protocol.describe(), "dataset": dataset_id, "root": str(getattr(manifest, "root", "")),
            "split": split, "fold": fold, "passes": passes, "seed": seed}
    entry = Path(cache_dir) / key if cache_dir is not None else None
    if entry is not None and (entry / "features.npz").is_file():
        try:
            cached = FeatureSet.load(entry)
        except Exception as exc:  # noqa: BLE001 (BadZipFile, a bad header, a missing array: recompute)
            cached = discard_entry(entry, exc)
        if cached is not None:
            cached.meta["cache"] = "hit"
            check_exclusions(cached.meta, max_unreadable)
            return cached

    rounds = range(passes) if passes > 0 else [None]
    datasets = [dataset_factory(manifest, protocol, split, fold, augmented=p is not None, seed=seed + (p or 0))
                for p in rounds]
    views = (build_train_augment(protocol) if passes > 0 else eval_views(protocol)).to(device)
    count = len(datasets[0])
    if count == 0:
        raise UserError(f"the {split} set of split {fold} is empty")
    chunks = [(start, min(start + chunk_size, count)) for start in range(0, count, chunk_size)]
    description = f"{split} features ({'%d passes' % passes if passes else '%d views' % protocol.views_per_video})"
    # videos whose probe already failed in the manifest: left out of the dataset up front
    up_front: dict[str, str] = dict(datasets[0].failures()) if hasattr(datasets[0], "failures") else {}
    excluded = dict(up_front)
    rounds = []
    with progress_bar(count * len(datasets), description, progress) as bar:
        for round_index, dataset in enumerate(datasets):
            # The device augmentation's randomness, per pass (a resumed run redraws it per chunk).
            generator = torch.Generator(device).manual_seed(seed + round_index) if passes > 0 else None
            parts = []
            for chunk_index, (start, stop) in enumerate(chunks):
                part = entry / f"part_{round_index:03d}_{chunk_index:05d}.npz" if entry is not None else None
                if part is not None and part.is_file():  # resume: this chunk was done by an earlier run
                    try:
                        parts.append(load_part(part))
                        bar.advance(stop - start)
                        continue
                    except Exception as exc:  # noqa: BLE001 (a damaged chunk is recomputed)
                        discard_entry(part, exc)
                parts.append(_extract_range(encoder, dataset, range(start, stop), views, device,
                                            batch_size, num_workers, generator, bar))
                if part is not None:
                    save_part(part, parts[-1])
            for chunk in parts:
                excluded.update(chunk["unreadable"])
            kept = [c for c in parts if len(c["indices"])]
            if kept:  # n×V×D (V = 1 for a pass)
                rounds.append(tuple(np.concatenate([c[k] for c in kept]) for k in ("features", "labels", "indices")))
            else:
                rounds.append((np.zeros((0, 1, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)))
    features, labels, indices = align_passes(rounds)
    meta.update(videos=count + len(up_front), evaluated=len(indices), excluded=dict(sorted(excluded.items())))
    result = FeatureSet(features.astype(np.float32), labels, indices, meta)
    result.meta["cache"] = "miss"
    if entry is not None:
        result.save(entry)
        for part in entry.glob("part_*.npz"):
            part.unlink()
    check_exclusions(result.meta, max_unreadable)
    return result
