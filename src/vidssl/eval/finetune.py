"""End-to-end fine-tuning (and the frozen-backbone linear probe on augmented clips), one routine.

Presets (:data:`FINETUNE_PRESETS`) hold each seed's recipe:

- ``"gdt"`` — GDT/STiCA (brave-gdt-stica.md Part D): SGD momentum 0.9, param groups head lr 0.0025 /
  backbone lr 0.00025, weight decay 0.005, lr ×8 linear warmup over 2 epochs, then ×0.05 at epochs 7
  and 11, 12 epochs, batch 32, each video listed 10 times per epoch (a random clip each time),
  orthogonal head init; test = 10×3 views, raw logits averaged.
- ``"fgkvmem"`` — FGKVMemPred (bassl-fgkvmem-bevt.md §2.8): SGD lr 0.2, wd 0, cosine with 5 warmup
  epochs from 0.001, 200 epochs, batch 32, dropout 0.5. MixUp/CutMix (on in the seed) is not
  implemented here; precise-BN is not run.
- ``"fgkvmem_linear"`` — FGKVMemPred's linear probe on augmented clips: backbone frozen (and kept
  in eval mode — the seed let BN statistics drift, the paper says frozen), lr 0.1, cosine, warmup 5
  epochs from 1e-4, 100 epochs.
- ``"tiny"`` — 2 epochs on CPU for tests and the embedded dataset.

The loop is Lightning's. The reported number is the **last epoch's** multi-view top-1; with
``eval_every_epoch_from = E`` the test set is also scored after each epoch ≥ E and the best of those
is reported separately as ``top1_best_epoch_on_test`` (GDT's model selection on the test set —
labelled as such because it is optimistic).

Unreadable videos are excluded, never replaced (:mod:`vidssl.eval.exclusion`): a training batch
loses them (a batch with none left is skipped), the test set scores the videos it could read, and
the result counts and names both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from vidssl.data.datasets import collate, worker_context
from vidssl.errors import ConfigError
from vidssl.eval.exclusion import DEFAULT_MAX_UNREADABLE, check_exclusions, excluded_list
from vidssl.eval.features import (
    ViewProtocol,
    build_train_augment,
    clip_batch,
    encode_batch,
    eval_views,
    make_dataset,
    pick_device,
    protocol_for,
)
from vidssl.eval.linear import warmup_cosine_lr
from vidssl.eval.report import confusion_matrix, topk_accuracy


@dataclass
class FinetuneConfig:
    """One fine-tuning recipe. ``schedule``: ``"warmup_step"`` (GDT) or ``"warmup_cosine"`` (FGKVMemPred)."""

    protocol: str = "gdt"
    epochs: int = 12
    batch_size: int = 32
    head_lr: float = 0.0025
    backbone_lr: float = 0.00025
    weight_decay: float = 0.005
    momentum: float = 0.9
    nesterov: bool = False
    schedule: Literal["warmup_step", "warmup_cosine"] = "warmup_step"
    warmup_epochs: float = 2.0
    warmup_multiplier: float = 8.0  # warmup_step: lr goes from base to base × multiplier
    warmup_start_lr: float = 1e-3  # warmup_cosine: the lr at step 0 (for every group, as in PySlowFast)
    decay_epochs: tuple[int, ...] = (7, 11)  # warmup_step: lr × gamma from each of these epochs on
    gamma: float = 0.05
    clips_per_video: int = 10
    freeze_backbone: bool = False
    dropout: float = 0.0
    head_init: Literal["orthogonal", "default"] = "orthogonal"
    eval_every_epoch_from: int = -1  # ≥ 0: also score the test set after each such epoch (best-epoch number)
    num_workers: int = 0
    seed: int = 0
    # BEVT (vidssl.methods.bevt_finetune): AdamW with layer-wise lr decay (< 1) and the backbone at
    # backbone_lr/head_lr, label smoothing, a weight EMA used for the test (momentum 0 = off), gradient
    # clipping (0 = off), the backbone's drop-path rate (< 0: as built)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 1.0
    label_smoothing: float = 0.0
    ema_momentum: float = 0.0
    grad_clip: float = 0.0
    drop_path: float = -1.0
    # recompute the backbone's blocks in the backward pass (vidssl.models.activation_checkpointing): less
    # activation memory for about one more forward per step; same losses, gradients and BN statistics
    activation_checkpointing: bool = False


FINETUNE_PRESETS: dict[str, FinetuneConfig] = {
    # Part D; the seed scored the test set after every epoch > 6 and reported the best: we report the
    # last epoch as `top1` and that selection separately as `top1_best_epoch_on_test`.
    "gdt": FinetuneConfig(eval_every_epoch_from=7),
    "fgkvmem": FinetuneConfig(
        protocol="fgkvmem", epochs=200, head_lr=0.2, backbone_lr=0.2, weight_decay=0.0, nesterov=True,
        schedule="warmup_cosine", warmup_epochs=5, warmup_start_lr=1e-3, clips_per_video=1, dropout=0.5,
        head_init="default",
    ),
    "fgkvmem_linear": FinetuneConfig(
        protocol="fgkvmem", epochs=100, head_lr=0.1, backbone_lr=0.0, weight_decay=0.0, nesterov=True,
        schedule="warmup_cosine", warmup_epochs=5, warmup_start_lr=1e-4, clips_per_video=1, freeze_backbone=True,
        head_init="default",
    ),
    # BEVT §3.9 (K400 config): AdamW 3e-4, wd 1e-3, layer-wise decay 0.9, 60 epochs cosine after 2.5 warm-up
    # epochs from 0.1×, batch 64, dropout 0.5, drop path 0.3, clip 40; test 4 × 3 views (bevt_k400 views).
    "bevt": FinetuneConfig(
        protocol="bevt_k400", epochs=60, batch_size=64, head_lr=3e-4, backbone_lr=3e-4, weight_decay=1e-3,
        optimizer="adamw", layer_decay=0.9, schedule="warmup_cosine", warmup_epochs=2.5, warmup_start_lr=3e-5,
        clips_per_video=1, dropout=0.5, head_init="default", grad_clip=40.0, drop_path=0.3,
    ),
    # BEVT §3.9 (SSv2 config): AdamW 5e-4, wd 0.05, backbone lr ×0.1, label smoothing 0.1, EMA, drop path 0.4,
    # no clipping; test 1 × 3 views (bevt_ssv2 views). Train view: crop, RandAugment(n=4, m=7), RandomErasing p 0.25
    # (views.py `_bevt_ssv2_train_view`). The seed also mirrored half its clips, a side effect of imgaug's
    # RandAugment that its flip_ratio=0 suggests was unintended; protocol_overrides={"train_augment":
    # "bevt_ssv2_seed"} restores it.
    "bevt_ssv2": FinetuneConfig(
        protocol="bevt_ssv2", epochs=60, batch_size=64, head_lr=5e-4, backbone_lr=5e-5, weight_decay=0.05,
        optimizer="adamw", schedule="warmup_cosine", warmup_epochs=2.5, warmup_start_lr=5e-5, clips_per_video=1,
        dropout=0.5, head_init="default", label_smoothing=0.1, ema_momentum=0.0002, drop_path=0.4,
    ),
    # The BEVT recipe at the embedded dataset's scale (CPU): demo views, 30 epochs.
    "bevt_tiny": FinetuneConfig(
        protocol="demo", epochs=30, batch_size=16, head_lr=1e-3, backbone_lr=1e-3, weight_decay=0.05,
        optimizer="adamw", layer_decay=0.75, schedule="warmup_cosine", warmup_epochs=2, warmup_start_lr=1e-4,
        clips_per_video=1, dropout=0.5, head_init="default", grad_clip=40.0, drop_path=0.1,
    ),
    "tiny": FinetuneConfig(
        protocol="demo_quick", epochs=2, batch_size=4, head_lr=0.01, backbone_lr=0.001, warmup_epochs=1,
        warmup_multiplier=2.0, decay_epochs=(2,), clips_per_video=1,
    ),
}


def lr_multiplier(cfg: FinetuneConfig, epoch: float) -> float:
    """Factor on each group's base lr at fractional ``epoch``.

    ``warmup_step`` reproduces GDT's GradualWarmupScheduler + MultiStepLR (stepped per epoch): epoch
    e < warmup: ``1 + (m-1)·e/warmup``; then ``m · gamma^(number of decay epochs ≤ e)``. For Part D
    (m 8, warmup 2, decay 7 and 11) that is ×1, ×4.5, ×8 (e2–6), ×0.4 (e7–10), ×0.02 (e11).
    ``warmup_cosine`` is PySlowFast's cosine with linear warmup, as a fraction of the base lr.
    """
    if cfg.schedule == "warmup_step":
        whole = math.floor(epoch)
        if whole < cfg.warmup_epochs:
            return 1.0 + (cfg.warmup_multiplier - 1.0) * whole / cfg.warmup_epochs
        return cfg.warmup_multiplier * cfg.gamma ** sum(whole >= d for d in cfg.decay_epochs)
    base = max(cfg.head_lr, 1e-12)
    return warmup_cosine_lr(epoch, base, cfg.epochs, cfg.warmup_epochs, cfg.warmup_start_lr) / base


class RepeatedDataset(torch.utils.data.ConcatDataset):
    """Every video listed ``len(datasets)`` times per epoch (GDT's ``train_clips_per_video``).

    The copies are datasets with different seeds, so each listing draws its own random clip;
    :meth:`set_epoch` forwards to them so every epoch draws new clips.
    """

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)


class Classifier(nn.Module):
    """Backbone → (dropout) → linear head. ``forward``: float ``B×C×T×H×W`` -> logits ``B×num_classes``."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0, head_init: str = "orthogonal"):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(int(backbone.embed_dim), num_classes)
        if head_init == "orthogonal":  # GDT's Finetune_Model
            nn.init.orthogonal_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))


def _lightning_module(model: Classifier, cfg: FinetuneConfig, augment: nn.Module, steps_per_epoch: int):
    import lightning as L

    class FinetuneModule(L.LightningModule):
        """Trains ``model`` on augmented random clips (``batch["video"]["clip"]`` uint8 ``B×T×H×W×C``)."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.augment = augment
            self.unreadable: dict[str, str] = {}  # train videos excluded (path -> reason)
            self.ema = None
            if cfg.ema_momentum > 0:
                from vidssl.methods.bevt_finetune import ParamEMA

                self.ema = ParamEMA(model, cfg.ema_momentum)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if self.ema is not None:
                self.ema.update(self.model, self.global_step)

        def train(self, mode: bool = True):
            super().train(mode)
            if cfg.freeze_backbone:  # a frozen backbone keeps its BN statistics
                self.model.backbone.eval()
            return self

        def training_step(self, batch, batch_idx):
            for _, path, reason in batch.get("unreadable", ()):
                self.unreadable[path] = reason
            if "clips" not in batch and "video" not in batch:
                return None  # every video of the batch was unreadable: no step
            with torch.no_grad():
                inputs = self.augment(clip_batch(batch))
            logits = self.model(inputs)
            labels = batch["label"].long()
            loss = nn.functional.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
            accuracy = (logits.argmax(dim=1) == labels).float().mean()
            self.log_dict({"train/loss": loss, "train/top1": accuracy}, prog_bar=True, on_step=True, on_epoch=True,
                          batch_size=len(labels))
            return loss

        def configure_optimizers(self):
            groups = [{"params": list(self.model.head.parameters()), "lr": cfg.head_lr, "weight_decay": cfg.weight_decay}]
            if not cfg.freeze_backbone:
                groups.append({"params": list(self.model.backbone.parameters()), "lr": cfg.backbone_lr,
                               "weight_decay": cfg.weight_decay})
            if cfg.optimizer == "adamw":
                from vidssl.methods.bevt_finetune import finetune_param_groups

                groups = finetune_param_groups(self.model, cfg.head_lr, cfg.weight_decay, cfg.layer_decay,
                                               cfg.backbone_lr / cfg.head_lr)
                optimizer = torch.optim.AdamW(groups, lr=cfg.head_lr, betas=tuple(cfg.betas))
            else:
                optimizer = torch.optim.SGD(groups, lr=cfg.head_lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: lr_multiplier(cfg, step / steps_per_epoch)
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return FinetuneModule()


@torch.no_grad()
def predict_views(model: nn.Module, loader, views: nn.Module, device: torch.device, progress=None,
                  unreadable: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multi-view test: raw logits averaged over each video's K×S views (``views`` = :func:`eval_views`).

    Returns ``(scores M×C, labels M)`` over the videos that could be read; the others are added to
    ``unreadable`` (path -> reason).
    """
    modes = {module: module.training for module in model.modules()}  # restored exactly (a frozen part stays eval)
    model.eval()
    views = views.to(device)
    scores, labels = [], []
    for batch in loader:
        for _, path, reason in batch.get("unreadable", ()):
            if unreadable is not None:
                unreadable[path] = reason
        if "clips" not in batch and "video" not in batch:
            continue
        logits = encode_batch(model, clip_batch(batch), views, device)  # B×V×C
        scores.append(logits.mean(dim=1).numpy())
        labels.append(np.asarray(batch["label"]))
        if progress is not None:
            progress(len(labels[-1]))
    for module, training in modes.items():
        module.training = training
    if not scores:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(labels)


@dataclass
class FinetuneResult:
    top1: float
    top5: float
    top1_per_epoch: dict[int, float] = field(default_factory=dict)
    top1_best_epoch_on_test: float | None = None
    confusion: np.ndarray | None = field(default=None, repr=False)
    test_videos: int = 0
    excluded: list[dict[str, Any]] = field(default_factory=list)  # {"fold", "set", "path", "reason"}

    def numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {"top1": self.top1, "top5": self.top5}
        if self.top1_best_epoch_on_test is not None:
            out["top1_best_epoch_on_test"] = self.top1_best_epoch_on_test
        out.update(test_videos=self.test_videos, excluded_videos=len(self.excluded))
        return out


def finetune(
    backbone: nn.Module,
    manifest,
    fold: int,
    cfg: FinetuneConfig,
    *,
    out_dir: str | Path,
    device: str | None = None,
    protocol: ViewProtocol | None = None,
    protocol_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    dataset_factory=make_dataset,
    max_unreadable: float = DEFAULT_MAX_UNREADABLE,
) -> FinetuneResult:
    """Fine-tune ``backbone`` + a new linear head on the train set of ``fold``; score the test set's K×S views.

    ``protocol``: the views (from :func:`~vidssl.eval.views.protocol_for`); None resolves
    ``cfg.protocol`` (with ``protocol_overrides``) for ``backbone``, so an encoder with an input
    contract is still fed with the contract's normalisation. Lightning writes
    ``out_dir/fold<N>/metrics.csv``. Returns last-epoch top-1/top-5 (and the per-epoch numbers when
    ``cfg.eval_every_epoch_from >= 0``). Unreadable test videos are excluded and counted; more than
    ``max_unreadable`` of the test set unreadable is a :class:`~vidssl.errors.DataError`.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    if cfg.head_lr <= 0 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"fine-tuning needs head_lr > 0, epochs >= 1 and batch_size >= 1 "
                          f"(got {cfg.head_lr}, {cfg.epochs}, {cfg.batch_size})")
    if not (0 < cfg.layer_decay <= 1 and 0 <= cfg.label_smoothing < 1 and 0 <= cfg.ema_momentum < 1 and cfg.grad_clip >= 0):
        raise ConfigError(f"fine-tuning needs 0 < layer_decay <= 1, 0 <= label_smoothing < 1, 0 <= ema_momentum < 1 and "
                          f"grad_clip >= 0 (got {cfg.layer_decay}, {cfg.label_smoothing}, {cfg.ema_momentum}, {cfg.grad_clip})")
    if cfg.activation_checkpointing and cfg.freeze_backbone:
        raise ConfigError("activation_checkpointing recomputes a trained backbone; a frozen one (freeze_backbone=true) "
                          "keeps no activations for it to save: set activation_checkpointing=false")
    if cfg.layer_decay != 1 and cfg.optimizer != "adamw":
        raise ConfigError("layer_decay applies to optimizer=adamw (the BEVT recipe); set optimizer=adamw or layer_decay=1")
    if protocol is None:
        protocol = protocol_for(backbone, cfg.protocol, **(protocol_overrides or {})).protocol
    torch_device = pick_device(device)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    num_classes = len(manifest.class_names)
    model = Classifier(backbone, num_classes, cfg.dropout, cfg.head_init)
    # The backbone may arrive frozen (load_eval_encoder); fine-tuning trains it, the linear variant does not.
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(not cfg.freeze_backbone)
    if cfg.drop_path >= 0:
        if not hasattr(model.backbone, "set_drop_path"):
            raise ConfigError(f"drop_path={cfg.drop_path}: this backbone has no drop path to set (use drop_path=-1)")
        model.backbone.set_drop_path(cfg.drop_path)
    if cfg.activation_checkpointing:
        from vidssl.models.activation_checkpointing import enable_activation_checkpointing

        name = getattr(backbone, "backbone_name", None) or type(backbone).__name__
        enable_activation_checkpointing(model.backbone, f"'{name}'", "activation_checkpointing")
    model.train()
    if cfg.freeze_backbone:  # a frozen backbone keeps its BN statistics (eval mode throughout)
        model.backbone.eval()
    train_set = RepeatedDataset([dataset_factory(manifest, protocol, "train", fold, augmented=True, seed=cfg.seed + 1000 * r)
                                 for r in range(max(1, cfg.clips_per_video))])
    test_set = dataset_factory(manifest, protocol, "test", fold, augmented=False, seed=cfg.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
                                               num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                                               collate_fn=collate, multiprocessing_context=worker_context(cfg.num_workers))
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=max(1, cfg.batch_size // 4), num_workers=cfg.num_workers,
                                              collate_fn=collate, multiprocessing_context=worker_context(cfg.num_workers))
    steps_per_epoch = len(train_loader)
    module = _lightning_module(model, cfg, build_train_augment(protocol), steps_per_epoch)

    per_epoch: dict[int, float] = {}

    class _EpochTest(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            train_set.set_epoch(trainer.current_epoch)  # new random clips every epoch

        def on_train_epoch_end(self, trainer, pl_module):
            epoch = trainer.current_epoch
            if 0 <= cfg.eval_every_epoch_from <= epoch < cfg.epochs - 1:
                scores, labels = predict_views(model, test_loader, eval_views(protocol), pl_module.device)
                per_epoch[epoch] = topk_accuracy(scores, labels, 1)
                pl_module.log("test/top1", per_epoch[epoch])

    out_dir = Path(out_dir)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator="gpu" if torch_device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if torch_device.type == "cuda" else "32-true",
        gradient_clip_val=cfg.grad_clip or None,
        logger=CSVLogger(out_dir, name=f"fold{fold}", version=""),
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        callbacks=[_EpochTest()],
        default_root_dir=out_dir,
    )
    trainer.fit(module, train_loader)
    if module.ema is not None:  # BEVT (mmcv EMAHook): the test sees the averaged weights
        module.ema.copy_to(model)
    model = model.to(torch_device)
    unreadable = dict(test_set.failures()) if hasattr(test_set, "failures") else {}
    listed = len(test_set) + len(unreadable)
    scores, labels = predict_views(model, test_loader, eval_views(protocol), torch_device, unreadable=unreadable)
    test_meta = {"videos": listed, "evaluated": len(labels), "excluded": unreadable, "split": "test", "fold": fold,
                 "root": getattr(manifest, "root", "ROOT")}
    check_exclusions(test_meta, max_unreadable)
    last_epoch = cfg.epochs - 1
    per_epoch[last_epoch] = topk_accuracy(scores, labels, 1)
    best = max(per_epoch.values()) if cfg.eval_every_epoch_from >= 0 else None
    return FinetuneResult(
        top1=per_epoch[last_epoch],
        top5=topk_accuracy(scores, labels, 5),
        top1_per_epoch=dict(sorted(per_epoch.items())),
        top1_best_epoch_on_test=best,
        confusion=confusion_matrix(scores.argmax(axis=1), labels, num_classes),
        test_videos=len(labels),
        excluded=excluded_list({"train": {"excluded": module.unreadable}, "test": test_meta}, fold),
    )


def finetune_config(preset: str, overrides: list[str] | None = None) -> FinetuneConfig:
    """Preset by name with ``key=value`` overrides (unknown keys/presets are ConfigErrors)."""
    from vidssl.config import apply_overrides

    if preset not in FINETUNE_PRESETS:
        import difflib

        close = difflib.get_close_matches(preset, FINETUNE_PRESETS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown fine-tuning preset '{preset}'{hint}; known: {', '.join(FINETUNE_PRESETS)}")
    return apply_overrides(dataclasses.replace(FINETUNE_PRESETS[preset]), overrides or [])
