"""Frozen-encoder features under a view protocol, cached on disk.

A *view protocol* fixes how a video becomes the clips an encoder sees at evaluation time:
K temporal clips (uniformly spaced starts, :class:`vidssl.data.sampling.UniformClipsPlan`) ×
S spatial crops (left/centre/right, or BraVe's diagonal), or — for a train set — N passes of one
random augmented clip. :func:`extract_features` runs the encoder (eval mode, no grad, bf16 autocast
on GPU) over a dataset and returns a :class:`FeatureSet` with features ``N×V×D``
(V = K·S views, or the N augmented passes) and labels ``N``.

Features are cached under ``cache_dir/<key>/`` where ``key`` hashes the encoder's checkpoint hash,
the protocol, the dataset (root, fold, split, files) and the seed. Extraction writes chunks of
``chunk_size`` videos as it goes (``part_00000.npz``…), so a killed run resumes at the first
missing chunk; the finished set is ``features.npz`` + ``meta.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from vidssl.errors import ConfigError, UserError

CropLayout = Literal["long_side", "diagonal"]


# ----------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class ViewProtocol:
    """How clips are taken from a video for feature extraction.

    Attributes:
        num_frames, stride: T frames, every ``stride``-th source frame.
        canvas: (H, W) the loader resizes (short side) and centre-crops each frame to.
        crop_size: side of the square spatial crops taken from the canvas.
        temporal_clips: K uniformly spaced clips per video (test views).
        spatial_crops: S crops per clip (test views; 1 or 3 for ``"long_side"``).
        crop_layout: ``"long_side"``: left/centre/right along the long side, centred on the short
            side (GDT, SlowFast); ``"diagonal"``: both offsets linearly spaced and zipped (BraVe, A9).
        train_augment: key of :data:`TRAIN_AUGMENTS`, the random view of augmented train passes
            (SVM / linear train features) and of fine-tuning.
        train_passes: default N augmented passes over the train set (one random clip per video per
            pass) for the SVM / linear train features; 0 = use the K×S test views.
        mean, std: per-channel normalisation after scaling to [0, 1].
    """

    name: str
    num_frames: int
    stride: int
    canvas: tuple[int, int]
    crop_size: int
    temporal_clips: int = 10
    spatial_crops: int = 3
    crop_layout: CropLayout = "long_side"
    train_augment: str = "fgkvmem"
    train_passes: int = 0
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    @property
    def views_per_video(self) -> int:
        return self.temporal_clips * self.spatial_crops

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Protocols of the seeds (dimensions from the reference specs) and the embedded dataset's.
#: Temporal starts are ``round(linspace(0, len - span, K))`` for all of them (BraVe's rule; GDT's
#: ``int(delta·k/K)`` never reaches the last frame — a sub-clip difference).
PROTOCOLS: dict[str, ViewProtocol] = {
    # BraVe A9: 32 frames step 2, short side 256, 10 × 3 diagonal 224 crops, /255 only; train = 10 passes.
    "brave": ViewProtocol("brave", 32, 2, (256, 340), 224, 10, 3, "diagonal", "brave", train_passes=10,
                          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
    # GDT/STiCA Part D: 32 frames at 30 fps, 128 crops, 10 × 3 left/centre/right. The seed jitters the
    # test short side in U(128,160) and colour-jitters test clips (a bug); we use a fixed 128 canvas.
    "gdt": ViewProtocol("gdt", 32, 1, (128, 170), 128, 10, 3, "long_side", "gdt"),
    # FGKVMemPred §2.8: 16 frames stride 4, 112 crops, 10 × 3 (the paper's 3 spatial crops; the
    # seed's code took random crops).
    "fgkvmem": ViewProtocol("fgkvmem", 16, 4, (128, 170), 112, 10, 3, "long_side", "fgkvmem"),
    # Embedded dataset (64×64 square videos, 25 fps), CPU-sized: 2 temporal clips × 1 centre crop (3 crops
    # of a square frame differ by a few pixels), train features from the same views (no augmented passes).
    "demo": ViewProtocol("demo", 8, 2, (64, 64), 56, 2, 1, "long_side", "demo", train_passes=0),
    # Fastest: 1 centre view (tests, `vidssl demo --quick`).
    "demo_quick": ViewProtocol("demo_quick", 8, 2, (64, 64), 56, 1, 1, "long_side", "demo", train_passes=1),
}


def get_protocol(name: str, **overrides: Any) -> ViewProtocol:
    """Protocol ``name`` from :data:`PROTOCOLS`, optionally with fields replaced (e.g. ``temporal_clips=1``)."""
    if name not in PROTOCOLS:
        import difflib

        close = difflib.get_close_matches(name, PROTOCOLS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown view protocol '{name}'{hint}; known: {', '.join(PROTOCOLS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    protocol = dataclasses.replace(PROTOCOLS[name], **overrides) if overrides else PROTOCOLS[name]
    if protocol.crop_layout == "long_side" and protocol.spatial_crops not in (1, 3):
        raise ConfigError(f"the long_side crop layout takes 1 or 3 spatial crops, got {protocol.spatial_crops}")
    if protocol.crop_size > min(protocol.canvas):
        raise ConfigError(f"crop {protocol.crop_size} does not fit the {protocol.canvas[0]}x{protocol.canvas[1]} canvas")
    return protocol


# ----------------------------------------------------------------------------- views on the device
def eval_views(protocol: ViewProtocol) -> torch.nn.Module:
    """uint8 ``B×K×T×H×W×C`` -> float ``B×(K·S)×C×T×crop×crop`` (view ``k·S + s``), normalised."""
    from vidssl.data.transforms import eval_transform

    return eval_transform(protocol.crop_size, protocol.spatial_crops, protocol.crop_layout,
                          mean=protocol.mean, std=protocol.std)


def _brave_train_view(protocol: ViewProtocol):
    # BraVe A9 train clips: random crop (area [0.3, 1], aspect [0.5, 2]), flip 0.5, colour p 0.8,
    # colour drop p 0.2; no blur, no RandConv.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.3, 1.0), ratio=(0.5, 2.0)), T.RandomHorizontalFlip(0.5),
            T.BraveColorAugment(p=0.8), T.RandomGrayscale(0.2)]


def _gdt_train_view(protocol: ViewProtocol):
    # GDT fine-tuning (Part D): RandomResizedCrop (0.14, 1), flip 0.5, colour jitter 0.4/0.4/0.4 with p 0.8.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.14, 1.0)), T.RandomHorizontalFlip(0.5),
            T.ColorJitter(0.4, 0.4, 0.4, 0.0, p=0.8)]


def _fgkvmem_train_view(protocol: ViewProtocol):
    # FGKVMemPred linear/fine-tune (§2.6): short side jittered in [128, 160], then a random 112 crop;
    # here a square random crop of area (128/160)²..1 of the canvas resized to the crop size (the same
    # scale range); grayscale 0.2 then ColorJitter(0.4, 0.4, 0.4, 0.1) always; flip 0.5.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=((128 / 160) ** 2, 1.0), ratio=(1.0, 1.0)),
            T.RandomHorizontalFlip(0.5), T.RandomGrayscale(0.2), T.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)]


def _demo_train_view(protocol: ViewProtocol):
    # The embedded dataset's classes include left/right and clockwise/anticlockwise motions: a
    # horizontal flip would turn one class into another, so there is none.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.4, 1.0)), T.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)]


#: Random train views by name (each a list of float ``B×C×T×H×W`` transforms).
TRAIN_AUGMENTS: dict[str, Callable[[ViewProtocol], list]] = {
    "brave": _brave_train_view,
    "gdt": _gdt_train_view,
    "fgkvmem": _fgkvmem_train_view,
    "demo": _demo_train_view,
}


def build_train_augment(protocol: ViewProtocol) -> torch.nn.Module:
    """uint8 ``B×T×H×W×C`` -> float ``B×C×T×crop×crop``: the protocol's random train view, normalised."""
    from vidssl.data import transforms as T

    if protocol.train_augment not in TRAIN_AUGMENTS:
        raise ConfigError(f"unknown train augmentation '{protocol.train_augment}'; known: {', '.join(TRAIN_AUGMENTS)}")
    return T.Compose([T.ToFloatClip(), *TRAIN_AUGMENTS[protocol.train_augment](protocol),
                      T.Normalize(protocol.mean, protocol.std)])


# ----------------------------------------------------------------------------- encoders
@dataclass
class EncoderInfo:
    """Where an evaluated encoder came from: ``source`` (path or ``random:<backbone>``) and a content hash."""

    source: str
    hash: str
    backbone: str = ""

    def as_dict(self) -> dict[str, str]:
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
) -> tuple[torch.nn.Module, EncoderInfo]:
    """A frozen encoder in eval mode: from a checkpoint (run dir / .safetensors / .ckpt) or random init.

    A missing path is a :class:`UserError`; an unknown backbone name a :class:`ConfigError`.
    """
    from vidssl import models

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise UserError(f"checkpoint '{checkpoint}' does not exist")
        weights = _weights_file(path)
        encoder = models.load_encoder(path)
        info = EncoderInfo(str(path), file_sha256(weights), getattr(encoder, "backbone_name", "") or "")
    elif backbone:
        kwargs = dict(backbone_kwargs or {})
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            encoder = models.build_random_encoder(backbone, **kwargs)
        spec = json.dumps({"backbone": backbone, "kwargs": kwargs, "seed": seed}, sort_keys=True)
        info = EncoderInfo(f"random:{backbone}", "random-" + hashlib.sha256(spec.encode()).hexdigest()[:24], backbone)
    else:
        raise UserError("give --checkpoint PATH (a pretrain run dir or encoder file) or --backbone NAME (random init)")
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder, info


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


def dataset_fingerprint(manifest, split: str, fold: int) -> str:
    """Hash of the videos (paths + labels) of one split of one fold."""
    subset = manifest.subset(split=split, fold=fold)
    digest = hashlib.sha256(f"{split}:{fold}".encode())
    for record in subset.records:
        digest.update(f"{record.path}|{record.label}\n".encode())
    return digest.hexdigest()[:24]


def make_dataset(manifest, protocol: ViewProtocol, split: str, fold: int, augmented: bool, seed: int = 0):
    """The :class:`~vidssl.data.datasets.VideoDataset` a protocol reads.

    Test views: K uniformly spaced clips per video (``K×T×H×W×C`` under key ``"clip"``); augmented
    train passes: one random clip (``T×H×W×C``).
    """
    from vidssl.data.datasets import VideoDataset
    from vidssl.data.sampling import RandomClipPlan, UniformClipsPlan, ViewSpec

    view = ViewSpec("clip", protocol.num_frames, stride=protocol.stride, canvas=protocol.canvas)
    plan = RandomClipPlan(view) if augmented else UniformClipsPlan(view, num_clips=protocol.temporal_clips)
    return VideoDataset(manifest, plan, split=split, fold=fold, seed=seed)


# ----------------------------------------------------------------------------- extraction
@dataclass
class FeatureSet:
    """Features of one split: ``features`` float32 ``N×V×D``, ``labels`` int64 ``N``, ``indices`` int64 ``N``."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "features.tmp.npz"
        np.savez(tmp, features=self.features, labels=self.labels, indices=self.indices)
        os.replace(tmp, directory / "features.npz")
        (directory / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return directory / "features.npz"

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureSet":
        directory = Path(directory)
        with np.load(directory / "features.npz") as data:
            arrays = {k: data[k] for k in ("features", "labels", "indices")}
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(arrays["features"], arrays["labels"], arrays["indices"], meta)


def cache_key(encoder_hash: str, protocol: ViewProtocol, dataset_id: str, split: str, fold: int, passes: int, seed: int) -> str:
    """Hex key naming a cache entry; any change of encoder, protocol, data, passes or seed changes it."""
    spec = json.dumps(
        {"encoder": encoder_hash, "protocol": protocol.describe(), "dataset": dataset_id, "split": split,
         "fold": fold, "passes": passes, "seed": seed},
        sort_keys=True,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def _progress(total: int, description: str, enabled: bool):
    """A rich progress bar (or a no-op) with an ``advance(n)`` method."""
    if not enabled:

        class _Silent:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def advance(self, n: int) -> None:
                pass

        return _Silent()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class _Bar:
        def __enter__(self):
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(description, total=total)
            return self

        def __exit__(self, *exc):
            return self.progress.__exit__(*exc)

        def advance(self, n: int) -> None:
            self.progress.advance(self.task, n)

    return _Bar()


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


def _extract_range(encoder, dataset, indices, views, device, batch_size, num_workers, generator, bar) -> tuple[np.ndarray, np.ndarray]:
    """Features ``n×V×D`` and labels of ``dataset`` items ``indices``."""
    from torch.utils.data import DataLoader, Subset

    from vidssl.data.datasets import collate

    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate)
    features, labels = [], []
    for batch in loader:
        video = batch["video"]["clip"]
        features.append(encode_batch(encoder, video, views, device, generator).numpy())
        labels.append(np.asarray(batch["label"]))
        bar.advance(len(video))
    return np.concatenate(features), np.concatenate(labels)


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
) -> FeatureSet:
    """Features of ``manifest``'s ``split`` of ``fold`` under ``protocol`` (cached when ``cache_dir`` is set).

    ``passes = 0``: K×S test views per video -> ``N×(K·S)×D``. ``passes = P > 0``: P augmented passes,
    one random augmented clip per video per pass -> ``N×P×D`` (pass p uses seed ``seed + p``).
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    encoder = encoder.to(device).eval()
    dataset_id = dataset_fingerprint(manifest, split, fold)
    key = cache_key(encoder_info.hash, protocol, dataset_id, split, fold, passes, seed)
    meta = {"key": key, "encoder": encoder_info.as_dict(), "protocol": protocol.describe(), "dataset": dataset_id,
            "root": str(getattr(manifest, "root", "")), "split": split, "fold": fold, "passes": passes, "seed": seed}
    entry = Path(cache_dir) / key if cache_dir is not None else None
    if entry is not None and (entry / "features.npz").is_file():
        cached = FeatureSet.load(entry)
        cached.meta["cache"] = "hit"
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
    parts_features, labels = [], None
    with _progress(count * len(datasets), description, progress) as bar:
        for round_index, dataset in enumerate(datasets):
            # The device augmentation's randomness, per pass (a resumed run redraws it per chunk).
            generator = torch.Generator(device).manual_seed(seed + round_index) if passes > 0 else None
            round_features, round_labels = [], []
            for chunk_index, (start, stop) in enumerate(chunks):
                part = entry / f"part_{round_index:03d}_{chunk_index:05d}.npz" if entry is not None else None
                if part is not None and part.is_file():  # resume: this chunk was done by an earlier run
                    with np.load(part) as data:
                        feats, labs = data["features"], data["labels"]
                    bar.advance(stop - start)
                else:
                    feats, labs = _extract_range(encoder, dataset, range(start, stop), views, device,
                                                 batch_size, num_workers, generator, bar)
                    if part is not None:
                        part.parent.mkdir(parents=True, exist_ok=True)
                        tmp = part.with_name(part.stem + ".tmp.npz")
                        np.savez(tmp, features=feats, labels=labs)
                        os.replace(tmp, part)
                round_features.append(feats)
                round_labels.append(labs)
            parts_features.append(np.concatenate(round_features))  # N×V×D (V = 1 for a pass)
            labels = np.concatenate(round_labels)
    features = np.concatenate(parts_features, axis=1).astype(np.float32)
    failures = [str(f) for dataset in datasets for f in (dataset.failures() if hasattr(dataset, "failures") else [])]
    if failures:
        meta["failures"] = failures
    result = FeatureSet(features, labels.astype(np.int64), np.arange(count, dtype=np.int64), meta)
    result.meta["cache"] = "miss"
    if entry is not None:
        result.save(entry)
        for part in entry.glob("part_*.npz"):
            part.unlink()
    return result
