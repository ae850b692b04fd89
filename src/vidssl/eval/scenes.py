"""The scene-segmentation protocol (BaSSL's fine-tuning, reference §1.11-1.13): shot features →
CRN + boundary head → AP / mIoU / F1 / Recall / Recall@3s.

1. **Shot features** (:func:`extract_shot_features`): every shot's keyframes (MovieNet-SSeg layout,
   ``240P_frames/<vid>/shot_XXXX_img_K.jpg``) go through the frozen encoder with the test transform
   (fit to the contract's canvas, centre crop: BaSSL's Resize(256) + CenterCrop(224)); a shot's feature
   is the mean over its keyframes. Cached per movie under a key of the encoder's hash, the contract and
   the keyframe files' paths, sizes and mtimes. Shots without any keyframe are reported and left out of
   the movie's sequence (neighbours are then the nearest shots that have images).
2. **Windows**: for each labelled shot, its ``2k+1`` neighbours ``centre + [-k, k]`` clipped to the
   movie (edge shots repeated, BaSSL's ``NeighborShotSampler``).
3. **Model**: the CRN (from the pretraining run when it has one — BaSSL — else random: the shot-level
   baselines) + ``Linear(hidden, 2)`` on the centre token; class-balanced cross-entropy (weights
   ``0.5/#pos`` and ``0.5/#neg`` per batch), Adam without decay, cosine per step, no warm-up.
   Seed values (:data:`SCENE_PRESETS` ``"bassl"``): batch 1024, 20 epochs, lr 1e-5 with a pretrained
   CRN and 1e-4 without (``base_lr`` 2.5e-6 / 2.5e-5 × 1024/256).
4. **Selection**: BaSSL validated on the test split and reported its last epoch. vidssl keeps the
   epoch with the best AP on the **val** split and reports the test split at that epoch (with the
   val numbers next to it). Without val movies the last epoch is used and the report says so.
5. **Repeats** (``repeats=N``, not in the seed): the fine-tuning alone can move test AP by tens of points
   on small test sets (on the embedded movies one seed lands near 40 AP and the next near 80), so one run
   says little about an encoder. With ``N > 1`` the head is fine-tuned N times (seeds ``seed … seed+N-1``),
   the report lists every run and the mean and standard deviation of each metric, and the scene model kept
   is the run with the best val AP (never chosen on test).

The fine-tuned model (encoder + CRN + head + the window size) is saved as a *scene model* directory
(:func:`save_scene_model`) that ``vidssl segment`` loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.errors import DataError, UserError
from vidssl.eval.scene_metrics import MovieScores, scene_metrics
from vidssl.models.contract import InputContract
from vidssl.models.crn import ContextualRelationNetwork

__all__ = ["SceneConfig", "SCENE_PRESETS", "scene_config", "SceneModel", "MovieShots", "load_shot_images",
           "extract_shot_features", "shot_windows", "balanced_cross_entropy", "fit_window_to_crn",
           "finetune_scene_model",
           "predict_boundaries", "save_scene_model", "load_scene_model", "run_scene_protocol", "crn_of_run",
           "IMAGE_CONTRACT"]

log = logging.getLogger(__name__)

#: How an encoder without an input contract (random init) is fed: BaSSL's ImageNet normalisation, 224 of 256.
IMAGE_CONTRACT = InputContract(modality="image", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                               num_frames=1, crop_size=224, canvas=256, eval_views="scenes")


@dataclass
class SceneConfig:
    """Scene fine-tuning settings (see the module docstring). ``lr`` None: the seed's rule (1e-5 with a
    pretrained CRN, 1e-4 without). The CRN shape is the pretraining run's when it has a CRN."""

    shots_per_side: int = 8
    crn_hidden_dim: int = 768
    crn_layers: int = 2
    crn_heads: int = 8
    crn_intermediate_dim: int = 3072
    crn_dropout: float = 0.1
    epochs: int = 20
    batch_size: int = 1024
    lr: float | None = None
    threshold: float = 0.5
    seed: int = 0
    feature_batch_size: int = 64
    repeats: int = 1


SCENE_PRESETS: dict[str, dict[str, Any]] = {
    "bassl": {},  # the seed's finetune/cfg/default.yaml and scripts
    # the embedded movies on a CPU: ~300 training shots, so small batches and a larger lr to take enough steps
    "tiny": {"shots_per_side": 4, "crn_hidden_dim": 64, "crn_layers": 2, "crn_heads": 4, "crn_intermediate_dim": 256,
             "epochs": 30, "batch_size": 32, "lr": 1e-3},
}


def scene_config(preset: str = "bassl", overrides: list[str] | None = None) -> SceneConfig:
    """A :class:`SceneConfig` from a preset name and ``key=value`` overrides (unknown keys are errors)."""
    from vidssl.config import apply_overrides, from_dict

    if preset not in SCENE_PRESETS:
        raise UserError(f"unknown scene preset '{preset}'; choose one of {', '.join(SCENE_PRESETS)}")
    cfg = from_dict(SceneConfig, dict(SCENE_PRESETS[preset]))
    cfg = apply_overrides(cfg, list(overrides or []))
    for name in ("epochs", "batch_size", "feature_batch_size", "crn_layers", "crn_heads", "repeats"):
        if getattr(cfg, name) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise UserError(f"lr must be > 0, got {cfg.lr}")
    return cfg


# ---------------------------------------------------------------------------------------------- model


class SceneModel(nn.Module):
    """CRN + ``Linear(hidden, 2)`` on the centre token: windows ``B×(2k+1)×D`` → logits ``B×2``."""

    def __init__(self, crn: ContextualRelationNetwork):
        super().__init__()
        self.crn = crn
        self.head = nn.Linear(crn.hidden_dim, 2)

    def forward(self, windows: Tensor) -> Tensor:
        return self.head(self.crn(windows)[1])


def crn_kwargs(cfg) -> dict[str, Any]:
    """Constructor arguments of the CRN of a config with ``crn_*`` fields and ``shots_per_side``."""
    return {"hidden_dim": cfg.crn_hidden_dim, "num_layers": cfg.crn_layers, "num_heads": cfg.crn_heads,
            "intermediate_dim": cfg.crn_intermediate_dim, "num_shots": 2 * cfg.shots_per_side + 1,
            "dropout": cfg.crn_dropout}


def crn_of_run(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The pretrained CRN of a run: ``(state_dict, constructor kwargs without input_dim)``, or None when the
    run has none (shot-level baselines, random encoders).

    Read from ``DIR/crn.safetensors`` (official checkpoints converted by :mod:`vidssl.models.convert_bassl`)
    or from ``crn.*`` of ``DIR/checkpoints/last.ckpt`` (a ``vidssl pretrain`` run; ``weights_only=True``).
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    exported = directory / "crn.safetensors"
    if exported.is_file():
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(exported), "pt") as handle:
            kwargs = json.loads(handle.metadata()["crn_kwargs"])
        return load_file(str(exported)), kwargs
    ckpt = path if path.suffix == ".ckpt" else directory / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        return None
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {k[len("crn."):]: v for k, v in data.get("state_dict", {}).items() if k.startswith("crn.")}
    if not state:
        return None
    method = data["hyper_parameters"]["config"]["method"]
    kwargs = crn_kwargs(type("M", (), {k: method[k] for k in ("crn_hidden_dim", "crn_layers", "crn_heads",
                                                                  "crn_intermediate_dim", "crn_dropout",
                                                                  "shots_per_side")}))
    return state, kwargs


# ---------------------------------------------------------------------------------------------- features


@dataclass
class MovieShots:
    """One movie for the protocol: its shots (``[start, end)`` frames), labels, keyframe paths and fps."""

    video_id: str
    split: str
    shots: list[list[int]]
    labels: list[int]
    keyframes: list[list[str]]
    fps: float | None
    video: str | None = None
    missing: list[int] = field(default_factory=list)  # shots without any keyframe


def load_shot_images(paths: list[str], contract: InputContract) -> Tensor:
    """Keyframes → float ``K×3×crop×crop``, normalised as ``contract`` says (test transform)."""
    import cv2

    from vidssl.data.slicers import fit_canvas

    frames = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"keyframe {path} cannot be read as an image; delete it or re-extract the shots")
        frames.append(torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
    out = []
    for frame in frames:
        fitted = fit_canvas(frame[None], (contract.canvas, contract.canvas))[0]
        top = (contract.canvas - contract.crop_size) // 2
        crop = fitted[top : top + contract.crop_size, top : top + contract.crop_size]
        out.append(crop)
    x = torch.stack(out).permute(0, 3, 1, 2).float().div_(255.0)
    lo, hi = contract.value_range
    x = x * (hi - lo) + lo
    mean = torch.tensor(contract.mean).view(1, -1, 1, 1)
    std = torch.tensor(contract.std).view(1, -1, 1, 1)
    return (x - mean) / std


def _movie_cache_key(encoder_hash: str, contract: InputContract, movie: MovieShots) -> str:
    digest = hashlib.sha256(f"{encoder_hash}|{contract.to_json()}|{movie.video_id}".encode())
    for paths in movie.keyframes:
        for path in paths:
            stat = os.stat(path)
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        digest.update(b"|")
    return digest.hexdigest()[:24]


@torch.no_grad()
def extract_shot_features(encoder: nn.Module, contract: InputContract, movies: list[MovieShots], device: torch.device,
                          encoder_hash: str = "", cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                          progress: bool = True) -> dict[str, np.ndarray]:
    """Per movie ``N×D`` float32 shot features (mean over keyframes); rows of shots without keyframes are NaN."""
    from vidssl.io import atomic_write
    from vidssl.progress import progress_bar

    encoder = encoder.to(device).eval()
    out: dict[str, np.ndarray] = {}
    total = sum(len(m.shots) for m in movies)
    with progress_bar(total, "shot features", progress) as bar:
        for movie in movies:
            cached = None
            if cache_dir is not None and encoder_hash:
                cached = Path(cache_dir) / "scenes" / f"{_movie_cache_key(encoder_hash, contract, movie)}.npy"
                if cached.is_file():
                    try:
                        out[movie.video_id] = np.load(cached)
                        bar.advance(len(movie.shots))
                        continue
                    except (OSError, ValueError):
                        cached.unlink(missing_ok=True)  # damaged: recompute
            features: list[np.ndarray | None] = [None] * len(movie.shots)
            todo = [(i, paths) for i, paths in enumerate(movie.keyframes) if paths]
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                images = [load_shot_images(paths, contract) for _, paths in chunk]
                counts = [len(x) for x in images]
                encoded = encoder(torch.cat(images).to(device)).float().cpu()
                for (index, _), part in zip(chunk, encoded.split(counts)):
                    features[index] = part.mean(0).numpy()
                bar.advance(len(chunk))
            bar.advance(len(movie.shots) - len(todo))
            dim = next((f.shape[0] for f in features if f is not None), int(getattr(encoder, "embed_dim", 1)))
            array = np.stack([f if f is not None else np.full(dim, np.nan, np.float32) for f in features]).astype(np.float32)
            out[movie.video_id] = array
            if cached is not None:
                atomic_write(cached, lambda tmp: _save_array(tmp, array), array.nbytes, "shot features")
    return out


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the temporary name
        np.save(handle, array)


def shot_windows(features: np.ndarray | Tensor, centres: np.ndarray, shots_per_side: int) -> Tensor:
    """Windows ``len(centres)×(2k+1)×D`` of ``features`` (``N×D``) around ``centres``, clipped to the movie
    (edge shots repeated, BaSSL's fine-tuning sampler)."""
    features = torch.as_tensor(features)
    offsets = torch.arange(-shots_per_side, shots_per_side + 1)
    index = (torch.as_tensor(centres)[:, None] + offsets[None, :]).clamp(0, features.shape[0] - 1)
    return features[index]


def balanced_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """BaSSL's class-balanced CE: ``Σ w·CE`` with ``w = 0.5/#pos`` for boundaries, ``0.5/#neg`` for the rest."""
    positive = labels == 1
    weights = torch.where(positive, 0.5 / (positive.sum() + 1e-5), 0.5 / ((~positive).sum() + 1e-5))
    return (weights * F.cross_entropy(logits, labels, reduction="none")).sum()


# ---------------------------------------------------------------------------------------------- training


def _sequence(movie: MovieShots, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shots that have a feature: ``(shot ids, their features)``."""
    keep = np.flatnonzero(np.isfinite(features).all(axis=1))
    return keep, features[keep]


def _training_windows(movies, features, k) -> tuple[Tensor, Tensor]:
    windows, labels = [], []
    for movie in movies:
        ids, feats = _sequence(movie, features[movie.video_id])
        label = np.asarray(movie.labels)[ids]
        centres = np.flatnonzero(label >= 0)
        if len(centres):
            windows.append(shot_windows(feats, centres, k))
            labels.append(torch.as_tensor(label[centres]))
    if not windows:
        raise DataError("no labelled training shots with features: the train split needs boundary_label 0/1 shots")
    return torch.cat(windows).float(), torch.cat(labels).long()


@torch.no_grad()
def predict_boundaries(model: SceneModel, features: np.ndarray, shots_per_side: int, device: torch.device,
                       batch_size: int = 1024) -> np.ndarray:
    """Boundary probability of every shot of a movie (``N×D`` features, all finite) → ``N``."""
    model.eval()
    probs = []
    for start in range(0, len(features), batch_size):
        centres = np.arange(start, min(start + batch_size, len(features)))
        windows = shot_windows(features, centres, shots_per_side).float().to(device)
        probs.append(torch.softmax(model(windows).float(), dim=1)[:, 1].cpu())
    return torch.cat(probs).numpy() if probs else np.zeros(0)


def _movie_scores(model, movies, features, k, device) -> list[MovieScores]:
    scores = []
    for movie in movies:
        ids, feats = _sequence(movie, features[movie.video_id])
        if not len(ids):
            continue
        probs = predict_boundaries(model, feats, k, device)
        frames = np.asarray(movie.shots)[ids]
        frames = np.stack([frames[:, 0], frames[:, 1] - 1], axis=1)  # inclusive end frame, as MovieNet's tables
        scores.append(MovieScores(movie.video_id, probs, np.asarray(movie.labels)[ids], frames, movie.fps, ids))
    return scores


def fit_window_to_crn(cfg: SceneConfig, pretrained: tuple[dict, dict] | None,
                      log_fn: Callable[[str], None] = print) -> SceneConfig:
    """``cfg`` with the window of the pretrained CRN (``shots_per_side`` from its ``num_shots``), said in the
    log when it changes; ``cfg`` itself when there is no pretrained CRN or the window already fits."""
    if pretrained is None or pretrained[1]["num_shots"] == 2 * cfg.shots_per_side + 1:
        return cfg
    fitted = (pretrained[1]["num_shots"] - 1) // 2
    log_fn(f"the pretrained CRN takes windows of {pretrained[1]['num_shots']} shots: shots_per_side set to {fitted}")
    return replace(cfg, shots_per_side=fitted)


def finetune_scene_model(movies: list[MovieShots], features: dict[str, np.ndarray], cfg: SceneConfig, input_dim: int,
                         device: torch.device, pretrained: tuple[dict, dict] | None = None,
                         log_fn: Callable[[str], None] = print) -> tuple[SceneModel, dict[str, Any]]:
    """Train the scene model on the train movies; keep the epoch with the best val AP (the last one when
    there is no val movie). Returns the model and the history (per epoch: loss, val metrics).
    With a ``pretrained`` CRN, ``cfg`` must have its window (:func:`fit_window_to_crn`)."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    if pretrained is not None:
        state, kwargs = pretrained
        if kwargs["num_shots"] != 2 * cfg.shots_per_side + 1:
            raise ValueError(f"the pretrained CRN takes windows of {kwargs['num_shots']} shots, the config "
                             f"{2 * cfg.shots_per_side + 1}: pass the config through fit_window_to_crn first")
        crn = ContextualRelationNetwork(input_dim, **kwargs)
        crn.load_state_dict(state)
    else:
        crn = ContextualRelationNetwork(input_dim, **crn_kwargs(cfg))
    model = SceneModel(crn).to(device)
    lr = cfg.lr if cfg.lr is not None else (1e-5 if pretrained is not None else 1e-4)
    train = [m for m in movies if m.split == "train"]
    val = [m for m in movies if m.split == "val"]
    windows, labels = _training_windows(train, features, cfg.shots_per_side)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)
    history: dict[str, Any] = {"lr": lr, "train_windows": int(len(labels)), "train_boundaries": int(labels.sum()),
                               "epochs": []}
    best_state, best_ap, best_epoch, step = None, -1.0, cfg.epochs - 1, 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            for group in optimizer.param_groups:  # cosine per step, no warm-up (§1.12)
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            rows = order[start : start + cfg.batch_size]
            loss = balanced_cross_entropy(model(windows[rows].to(device)), labels[rows].to(device))
            if not torch.isfinite(loss):
                raise DataError(f"scene fine-tuning diverged at epoch {epoch} (loss {float(loss)}); lower lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        entry = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val:
            metrics = scene_metrics(_movie_scores(model, val, features, cfg.shots_per_side, device), cfg.threshold)
            entry["val"] = metrics
            if metrics["ap"] > best_ap:
                best_ap, best_epoch = metrics["ap"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history["epochs"].append(entry)
        log_fn(f"epoch {epoch + 1}/{cfg.epochs}: loss {entry['loss']:.4f}"
               + (f", val AP {entry['val']['ap']:.2f}" if val else ""))
    if best_state is not None:
        model.load_state_dict(best_state)
    history["selected_epoch"] = best_epoch
    history["selected_on"] = "val AP" if val else "last epoch (no val movies)"
    return model, history


# ---------------------------------------------------------------------------------------------- the scene model file


def save_scene_model(directory: str | os.PathLike, encoder: nn.Module, contract: InputContract, model: SceneModel,
                     cfg: SceneConfig, backbone: str, backbone_kwargs: dict) -> Path:
    """``DIR/encoder.safetensors`` (with its contract) + ``DIR/scene_head.safetensors`` (CRN + head, with the
    window size and threshold in its metadata)."""
    from safetensors.torch import save_file

    from vidssl.io import atomic_write
    from vidssl.models import save_encoder

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_encoder(encoder, directory / "encoder.safetensors", name=backbone, kwargs=backbone_kwargs, contract=contract)
    crn = model.crn
    meta = {"crn_kwargs": json.dumps(crn.config), "input_dim": str(crn.input_dim),
            "shots_per_side": str(cfg.shots_per_side), "threshold": str(cfg.threshold)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / "scene_head.safetensors", lambda tmp: save_file(state, str(tmp), metadata=meta),
                 sum(v.numel() * v.element_size() for v in state.values()), "the scene model")
    return directory


def load_scene_model(directory: str | os.PathLike) -> tuple[nn.Module, InputContract, SceneModel, dict[str, Any]]:
    """``(encoder, contract, scene model, {"shots_per_side", "threshold"})`` of a scene model directory."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from vidssl.models import load_encoder

    directory = Path(directory)
    head = directory / "scene_head.safetensors"
    if not head.is_file():
        raise UserError(f"{directory} is not a scene model (no scene_head.safetensors); fine-tune one with "
                        "`vidssl eval scenes --checkpoint RUN --data MOVIES --out DIR` and pass DIR")
    encoder = load_encoder(directory / "encoder.safetensors")
    contract = getattr(encoder, "input_contract", None) or IMAGE_CONTRACT
    with safe_open(str(head), "pt") as handle:
        meta = handle.metadata()
    kwargs = json.loads(meta["crn_kwargs"])
    model = SceneModel(ContextualRelationNetwork(int(meta["input_dim"]), **kwargs))
    model.load_state_dict(load_file(str(head)))
    model.eval()
    return encoder.eval(), contract, model, {"shots_per_side": int(meta["shots_per_side"]),
                                             "threshold": float(meta["threshold"])}


# ---------------------------------------------------------------------------------------------- the protocol


def movies_of(root: str | os.PathLike, report: list[str]) -> list[MovieShots]:
    """The movies of a MovieNet-SSeg tree with their frame rates (``anno/fps.json`` or the movie file)."""
    from vidssl.data.layouts.movienet import read_movienet

    out = []
    for entry in read_movienet(root, report):
        fps = entry.fps
        if fps is None and entry.video is not None:
            from vidssl.data.decode import probe

            fps = probe(entry.video).fps
        if fps is None:
            raise DataError(f"movie {entry.video_id} has no frame rate: Recall@3s is measured at the movie's real fps; "
                            f"add it to {Path(root) / 'anno' / 'fps.json'} ({{\"{entry.video_id}\": 23.976, ...}})")
        missing = [i for i, paths in enumerate(entry.keyframes) if not paths]
        out.append(MovieShots(entry.video_id, entry.split, entry.shots, entry.labels, entry.keyframes, fps,
                              entry.video, missing))
    return out


def run_scene_protocol(data: str | os.PathLike, out: str | os.PathLike, cfg: SceneConfig,
                       checkpoint: str | None = None, backbone: str | None = None, backbone_kwargs: dict | None = None,
                       device: str = "auto", cache_dir: str | None = None, progress: bool = True,
                       contract: InputContract | None = None, log_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Extract shot features, fine-tune, select on val, evaluate on test; write ``OUT/report.json``,
    ``OUT/report.md`` and the scene model ``OUT/scene_model/``. Returns the report.

    ``contract``: how to feed an encoder that has none (a random ``backbone``); default :data:`IMAGE_CONTRACT`.
    An encoder's own contract always wins."""
    from vidssl.eval.features import load_eval_encoder, pick_device
    from vidssl.io import atomic_write, output_dir

    output_dir(out)
    out = Path(out)
    encoder, info = load_eval_encoder(checkpoint, backbone, seed=cfg.seed, backbone_kwargs=backbone_kwargs)
    contract = getattr(encoder, "input_contract", None) or contract or IMAGE_CONTRACT
    if contract.modality != "image":
        raise UserError(f"the scene protocol encodes shot keyframes: the encoder must take images (its input "
                        f"contract says {contract.modality}); pretrain with a BaSSL or shot_simclr preset")
    problems: list[str] = []
    movies = movies_of(data, problems)
    if not any(m.split == "test" for m in movies):
        raise DataError(f"{data} has no test movies (anno/anno.test.ndjson); the protocol reports the test split")
    dev = pick_device(device)
    features = extract_shot_features(encoder, contract, movies, dev, info.hash, cache_dir, cfg.feature_batch_size,
                                     progress)
    pretrained = crn_of_run(checkpoint) if checkpoint else None
    input_dim = next(iter(features.values())).shape[1]
    cfg = fit_window_to_crn(cfg, pretrained, log_fn)
    run_results = []  # val/test metrics per fine-tuning seed
    best = None  # (index, model, history) of the run with the best val AP (the first without val): never test
    for index, seed in enumerate(range(cfg.seed, cfg.seed + cfg.repeats)):
        if cfg.repeats > 1:
            log_fn(f"fine-tuning run {index + 1}/{cfg.repeats} (seed {seed})")
        model, history = finetune_scene_model(movies, features, replace(cfg, seed=seed), input_dim, dev,
                                              pretrained, log_fn)
        run_results.append({split: scene_metrics(_movie_scores(model, [m for m in movies if m.split == split],
                                                               features, cfg.shots_per_side, dev), cfg.threshold)
                            for split in ("val", "test") if any(m.split == split for m in movies)})
        val_ap = run_results[-1]["val"]["ap"] if "val" in run_results[-1] else None
        if best is None or (val_ap is not None and val_ap > run_results[best[0]]["val"]["ap"]):
            best = (index, model, history)
    kept, model, history = best
    results = run_results[kept]
    save_scene_model(out / "scene_model", encoder, contract, model, cfg, info.backbone or "", dict(
        getattr(encoder, "backbone_kwargs", None) or backbone_kwargs or {}))
    report = {"protocol": "scenes", "test": results["test"], "val": results.get("val"), "history": history,
              "encoder": info.as_dict(), "pretrained_crn": pretrained is not None, "config": asdict(cfg),
              "data": str(data), "problems": problems,
              "shots_without_keyframes": {m.video_id: m.missing for m in movies if m.missing}}
    if cfg.repeats > 1:
        report["repeats"] = _repeat_summary(run_results, cfg.seed, kept)
    text = json.dumps(report, indent=1, default=float)
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text), len(text), "the report")
    t = results["test"]
    lines = ["# Scene segmentation (BaSSL protocol)", "",
             f"encoder: {info.source}; CRN: {'pretrained' if pretrained is not None else 'random init'}; "
             f"epoch selected on {history['selected_on']}: {history['selected_epoch'] + 1}", "",
             "| split | AP | mIoU | F1 | Recall | Recall@3s | movies | shots |", "|---|---|---|---|---|---|---|---|"]
    for split, r in results.items():
        lines.append(f"| {split} | {r['ap']:.2f} | {r['miou']:.2f} | {r['f1']:.2f} | {r['recall']:.2f} | "
                     f"{r['recall_at_3s']:.2f} | {r['movies']} | {r['shots']} |")
    if cfg.repeats > 1:
        summary = report["repeats"]
        lines += ["", f"Over {cfg.repeats} fine-tuning seeds ({cfg.seed}–{cfg.seed + cfg.repeats - 1}; the table "
                  f"above is seed {summary['kept_seed']}, best val AP): mean ± std", "",
                  "| split | AP | mIoU | F1 | Recall | Recall@3s |", "|---|---|---|---|---|---|"]
        for split, stats in summary["mean"].items():
            std = summary["std"][split]
            lines.append(f"| {split} | " + " | ".join(f"{stats[k]:.2f} ± {std[k]:.2f}" for k in _METRIC_KEYS) + " |")
    if problems:
        lines += ["", "Problems in the data (skipped, never replaced):", *[f"- {p}" for p in problems]]
    atomic_write(out / "report.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"), 0, "the report")
    log_fn(f"test: AP {t['ap']:.2f}, mIoU {t['miou']:.2f}, F1 {t['f1']:.2f}, Recall {t['recall']:.2f}, "
           f"Recall@3s {t['recall_at_3s']:.2f} ({out / 'report.json'})")
    if cfg.repeats > 1:
        mean, std = report["repeats"]["mean"]["test"], report["repeats"]["std"]["test"]
        log_fn(f"test over {cfg.repeats} fine-tuning seeds: AP {mean['ap']:.2f} ± {std['ap']:.2f}, "
               f"mIoU {mean['miou']:.2f} ± {std['miou']:.2f} (the kept model: seed {report['repeats']['kept_seed']})")
    return report


_METRIC_KEYS = ("ap", "miou", "f1", "recall", "recall_at_3s")


def _repeat_summary(run_results: list[dict[str, dict]], first_seed: int, kept: int) -> dict[str, Any]:
    """Every fine-tuning run's val/test metrics and, per split and metric, their mean and standard deviation
    (population std over the runs)."""
    per_run = [{"seed": first_seed + i, **{split: {k: r[k] for k in _METRIC_KEYS} for split, r in results.items()}}
               for i, results in enumerate(run_results)]
    splits = [split for split in ("val", "test") if split in per_run[0]]
    return {"runs": per_run, "kept_seed": first_seed + kept,
            "mean": {s: {k: float(np.mean([r[s][k] for r in per_run])) for k in _METRIC_KEYS} for s in splits},
            "std": {s: {k: float(np.std([r[s][k] for r in per_run])) for k in _METRIC_KEYS} for s in splits}}
