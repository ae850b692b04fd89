"""The training engine every method shares: :class:`SSLMethod` and the pretraining configs.

A method is a small subclass (solo-learn style) that declares

- ``Config``: its dataclass (a subclass of :class:`MethodConfig`), the preset's ``method:`` section;
- ``build()``: its heads (and EMA targets via :meth:`SSLMethod.add_target`);
- ``make_plan()``: the clip plan its views need (decoded once per item by the shared dataset);
- ``augment(batch)``: device-side augmentation of the uint8 batch → list of float ``B×C×T×H×W`` views;
- ``compute_loss(views, batch) -> dict``: ``"loss"`` plus scalars to log, and optionally
  ``"embedding"`` (``B×D`` online backbone embedding) for the online linear probe.

The base owns the rest: optimiser groups (LARS/SGD/AdamW) with warmup + cosine per step,
EMA targets with the 0.996 → 1 cosine momentum schedule, an online linear probe on detached
embeddings (``probe/acc``), SyncBN when distributed, a resumable sampler, RNG state in
checkpoints, and the encoder export. The Lightning ``Trainer`` around it is built by
:mod:`vidssl.methods.train`.

The learning rate is a pure function of ``global_step`` (set in ``on_train_batch_start`` for
every group that has a ``base_lr``), so a resumed run has no scheduler state to get out of
step; a subclass that overrides ``configure_optimizers`` may instead return its own scheduler
(its groups then carry no ``base_lr`` and are left alone). The EMA update runs inside
``optimizer_step`` for the same reason: a checkpoint written at the end of a batch already
holds the updated targets.

The main video encoder is ``self.encoder`` (state keys ``encoder.*``); checkpoints carry
``hyper_parameters["encoder"] = {"name", "kwargs"}`` so ``vidssl.models.load_encoder`` can
rebuild it from a ``.ckpt``.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from vidssl.config import _suggest, all_keys, from_dict, parse_override, to_dict
from vidssl.errors import ConfigError
from vidssl.optim import OptimConfig, build_optimizer, cosine_momentum, split_decay_groups, warmup_cosine

# --------------------------------------------------------------------------------------------
# Typed configuration
# --------------------------------------------------------------------------------------------


@dataclass
class MethodConfig:
    """Settings every method has; a method's ``Config`` subclasses this.

    ``batch`` views: ``num_frames`` frames every ``stride`` source frames, decoded to a
    ``canvas``×``canvas`` square by the workers and randomly resized-cropped to
    ``crop_size`` on the device.
    """

    name: str = ""
    backbone: str = "r3d18"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 16
    stride: int = 4
    canvas: int = 128
    crop_size: int = 112
    ema_momentum: float = 0.996
    ema_final_momentum: float = 1.0
    probe: bool = True
    probe_lr: float = 0.1


@dataclass
class DataConfig:
    """Where the videos are and how they are loaded.

    ``batch_size`` is the GLOBAL batch (as in PySlowFast); each process loads
    ``batch_size / world_size``. ``demo_size`` is used only when ``root`` does not exist and
    ``generate_demo`` is true (the embedded dataset is then written there first).
    """

    root: str = "data/demo"
    format: str = "auto"
    split: Literal["train", "test", "all"] = "train"
    fold: int = 1
    batch_size: int = 64
    num_workers: int = 4
    decoder: str = "pyav"
    generate_demo: bool = False
    demo_size: Literal["tiny", "default"] = "default"


@dataclass
class TrainerConfig:
    """The Lightning ``Trainer``: length, precision, devices, logging and checkpoints.

    ``precision="auto"`` is bf16-mixed on GPU and 32-true on CPU. ``devices`` is ``"auto"``
    or a number. ``checkpoint_every`` is in optimiser steps.
    """

    max_epochs: int = 400
    max_steps: int = -1
    precision: str = "auto"
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 500
    seed: int = 0
    compile: bool = False
    channels_last: bool = True
    sync_batchnorm: bool = True
    progress_bar: bool = True


@dataclass
class PretrainConfig:
    """A whole pretraining run: ``method`` (the method's own dataclass), ``data``, ``optim``, ``trainer``."""

    method: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def pretrain_config_from_dict(raw: dict[str, Any]) -> PretrainConfig:
    """Build a :class:`PretrainConfig` from a plain dict (a preset); the ``method.name`` picks the
    method's dataclass from :data:`vidssl.methods.METHODS`. Unknown keys raise ``ConfigError``."""
    from vidssl.methods import METHODS

    raw = dict(raw or {})
    method = raw.pop("method", None)
    if not isinstance(method, dict) or "name" not in method:
        raise ConfigError("the config needs a 'method' section with a 'name' (one of: " + ", ".join(sorted(METHODS)) + ")")
    name = method["name"]
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'{_suggest(str(name), METHODS)}; known: {', '.join(sorted(METHODS))}")
    cfg = from_dict(PretrainConfig, raw)
    cfg.method = from_dict(METHODS[name].Config, method, prefix="method")
    return cfg


def apply_pretrain_overrides(cfg: PretrainConfig, overrides: list[str]) -> PretrainConfig:
    """``key=value`` overrides (e.g. ``optim.lr=0.5``, ``max_steps=100``) checked against every key.

    A bare ``max_steps``/``max_epochs`` is accepted as ``trainer.<key>`` for convenience.
    """
    data = to_dict(cfg)
    valid = all_keys(cfg)
    for text in overrides:
        key, value = parse_override(text)
        if key not in valid and f"trainer.{key}" in valid:
            key = f"trainer.{key}"
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, valid)}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        if isinstance(node.get(parts[-1]), dict) and value.strip().startswith("{"):
            try:  # a mapping value such as method.backbone_kwargs="{width: 8}"
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"{key}: cannot read {value!r} as a mapping (write it like {{width: 8}})") from None
        node[parts[-1]] = value
    return pretrain_config_from_dict(data)


# --------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` (``B×…``) from every process along dim 0, keeping gradients.

    Unlike ``torch.distributed.all_gather``, the result stays in the autograd graph: the
    backward pass sends each process the gradient of its own slice, summed over every
    process's loss (``torch.distributed.nn.functional.all_gather``). Returns ``x`` itself
    when not distributed. Every process must pass the same shape.
    """
    if not _dist_ready() or torch.distributed.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose batch statistics are all-reduced over processes, on any device (gloo too).

    ``torch.nn.SyncBatchNorm`` only runs on GPUs; this one computes the global mean and
    variance from all-reduced sums (with autograd through the reduction), so the CPU DDP
    tests and CPU runs see exactly the statistics of the whole batch. Eval mode and
    single-process runs fall back to plain ``F.batch_norm``.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _dist_ready() and torch.distributed.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count.view(1)])
        stats = all_reduce(stats)
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c : 2 * c] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased.detach(), alpha=self.momentum)
                self.num_batches_tracked.add_(1)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm by a synchronised one: torch's ``SyncBatchNorm`` on CUDA,
    :class:`DistributedBatchNorm` elsewhere. Parameters and buffers are kept."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistributedBatchNorm):
        out = DistributedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device_type))
    return out


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``θ_target ← m·θ_target + (1 - m)·θ_online`` over parameters only (PySlowFast
    ``_update_history``; the target's BN runs in train mode, so its buffers are not copied)."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise RuntimeError("EMA target and online network differ in structure")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)


# --------------------------------------------------------------------------------------------
# Sampler that resumes mid-epoch
# --------------------------------------------------------------------------------------------


class ResumableSampler(torch.utils.data.Sampler[int]):
    """Shuffled indices for one process, a fresh permutation each epoch (seed + epoch),
    that can start part-way into an epoch after ``--resume``.

    Lightning calls ``set_epoch``. :meth:`resume_at` makes the next pass over epoch
    ``step // batches_per_epoch`` skip the batches already trained on, so a resumed run
    sees exactly the items an uninterrupted one would.
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, dataset: Any = None) -> None:
        if length < batch_size * world_size:
            raise ConfigError(f"the dataset has {length} clips, fewer than one batch ({batch_size} × {world_size} processes); "
                              "lower data.batch_size")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.per_rank = length // world_size
        self.batches_per_epoch = self.per_rank // batch_size
        self.dataset = dataset  # its set_epoch changes the per-item random draws (clip times)
        self.epoch = 0
        self._skip_epoch, self._skip_batches = -1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dataset is not None and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def resume_at(self, step: int) -> None:
        """Position the sampler after ``step`` optimiser steps (one batch each)."""
        epoch, skip = divmod(step, self.batches_per_epoch)
        self.set_epoch(epoch)
        self._skip_epoch, self._skip_batches = epoch, skip

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        mine = order[self.rank : self.per_rank * self.world_size : self.world_size]
        if self.epoch == self._skip_epoch:
            mine = mine[self._skip_batches * self.batch_size :]
            self._skip_epoch = -1
        return iter(mine)


# --------------------------------------------------------------------------------------------
# The base LightningModule
# --------------------------------------------------------------------------------------------


def online_probe(embed_dim: int, num_classes: int) -> nn.Module:
    """The online linear probe: ``BatchNorm1d(affine=False)`` then ``Linear``; ``B×D`` → ``B×classes``.

    The parameter-free BatchNorm standardises the embedding (as MAE's linear probing does) so a
    fixed probe learning rate suits every backbone and every stage of training: with a bare
    ``Linear`` at lr 0.1, embeddings that a logistic regression classifies at 23.6 % gave 16.7 %
    on the training batches (the demo's KVMem run after 800 steps); with the BatchNorm, 23.6 %.
    """
    return nn.Sequential(nn.BatchNorm1d(embed_dim, affine=False), nn.Linear(embed_dim, num_classes))


class SSLMethod(L.LightningModule):
    """Base of every self-supervised method (see the module docstring for the hooks).

    Args:
        config: a :class:`PretrainConfig` or its plain-dict form (as stored in checkpoints).
        num_classes: classes of the training data (0 = unlabeled: no online probe).
        encoder: ignored; stored in the hyper-parameters for ``load_encoder``.
    """

    Config: ClassVar[type] = MethodConfig
    # Per-channel normalisation of the encoder's input after scaling pixels to [0, 1]. Feature
    # extraction must use the same values (``vidssl demo`` reads them from here), or BatchNorm's
    # running statistics no longer match what the encoder sees.
    input_mean: ClassVar[float] = 0.45
    input_std: ClassVar[float] = 0.225

    def __init__(self, config: PretrainConfig | dict, num_classes: int = 0, encoder: dict | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, PretrainConfig) else pretrain_config_from_dict(copy.deepcopy(config))
        if not isinstance(cfg.method, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a '{self.Config.__name__}' method config, got {type(cfg.method).__name__}")
        self.cfg = cfg
        m = cfg.method
        self.save_hyperparameters({"config": to_dict(cfg), "num_classes": int(num_classes),
                                   "encoder": {"name": m.backbone, "kwargs": dict(m.backbone_kwargs)}})
        from vidssl.models.backbones import build_backbone

        self.encoder = build_backbone(m.backbone, **m.backbone_kwargs)
        self.embed_dim = int(self.encoder.embed_dim)
        self.num_classes = int(num_classes)
        self.probe = online_probe(self.embed_dim, num_classes) if (num_classes > 0 and m.probe) else None
        self._ema_pairs: list[tuple[str, str]] = []  # (online, target) attribute names
        self._manifest = None
        self._sampler: ResumableSampler | None = None
        self._dataset = None
        self._resume_step = 0
        self.build()

    # ---- hooks a method implements ----------------------------------------------------------

    def build(self) -> None:
        """Create heads and EMA targets (:meth:`add_target`)."""

    def make_plan(self):
        """The clip plan (``vidssl.data.sampling``) that yields the views this method needs."""
        raise NotImplementedError

    def augment(self, batch: dict[str, Any]) -> list[Tensor]:
        """Device-side augmentation: uint8 batch → list of float ``B×C×T×H×W`` views."""
        raise NotImplementedError

    def compute_loss(self, views: list[Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Loss dict with key ``"loss"``; optional ``"embedding"`` (``B×D``) feeds the probe."""
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameter groups ``{"name", "params", "lr_mult"}`` (probe excluded).
        Override to give heads their own lr multiplier."""
        params = [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("probe.")]
        return [{"name": "online", "params": params, "lr_mult": 1.0}]

    # ---- shared mechanics -------------------------------------------------------------------

    def add_target(self, target_name: str, online_name: str) -> nn.Module:
        """Create ``self.<target_name>``: a frozen copy of ``self.<online_name>`` that follows it as
        an EMA of its parameters after every optimiser step (momentum: :meth:`ema_momentum`)."""
        target = copy.deepcopy(self.get_submodule(online_name))
        for p in target.parameters():
            p.requires_grad_(False)
        setattr(self, target_name, target)
        self._ema_pairs.append((online_name, target_name))
        return target

    @property
    def total_steps(self) -> int:
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return 1
        return max(1, int(trainer.estimated_stepping_batches))

    def ema_momentum(self, step: int | None = None) -> float:
        m = self.cfg.method
        return cosine_momentum(self.global_step if step is None else step, self.total_steps,
                               m.ema_momentum, m.ema_final_momentum)

    def to_model_layout(self, x: Tensor) -> Tensor:
        """channels-last-3d on GPU (faster 3-D convs under bf16), unchanged on CPU."""
        if self.cfg.trainer.channels_last and x.is_cuda and x.dim() == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def attach_data(self, manifest: Any) -> None:
        """The manifest ``train_dataloader`` reads (set by :func:`vidssl.methods.train.pretrain`)."""
        self._manifest = manifest

    def make_dataset(self, split: str | None):
        """The training dataset over the attached manifest (override to change the audio rate or
        add per-item data, as BraVe does for its optical-flow view)."""
        from vidssl.data.datasets import VideoDataset

        cfg = self.cfg
        return VideoDataset(self._manifest, self.make_plan(), split=split, fold=cfg.data.fold,
                            seed=cfg.trainer.seed, decoder=cfg.data.decoder)

    def train_dataloader(self):
        from vidssl.data.datasets import collate

        if self._manifest is None:
            raise ConfigError("no training data attached: call method.attach_data(manifest) first")
        cfg, trainer = self.cfg, self.trainer
        world, rank = trainer.world_size, trainer.global_rank
        if cfg.data.batch_size % world:
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not divisible by the {world} processes")
        per_rank = cfg.data.batch_size // world
        split = None if cfg.data.split == "all" else cfg.data.split
        dataset = self.make_dataset(split)
        self._dataset = dataset
        self._sampler = ResumableSampler(len(dataset), per_rank, seed=cfg.trainer.seed, rank=rank, world_size=world,
                                         dataset=dataset)
        if self._resume_step:
            self._sampler.resume_at(self._resume_step)
        workers = cfg.data.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=per_rank, sampler=self._sampler, num_workers=workers, drop_last=True, collate_fn=collate,
            pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
            # own generator: creating an iterator must not consume the global RNG (exact resume)
            generator=torch.Generator().manual_seed(cfg.trainer.seed),
        )

    def skipped_videos(self) -> dict[str, str]:
        """Unreadable videos the training data skipped so far (path → reason)."""
        return self._dataset.failures() if self._dataset is not None else {}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self._dataset is not None and batch.get("skipped"):
            self._dataset.note_batch(batch)
        if self.trainer is not None and self.trainer.training:
            batch["views"] = [self.to_model_layout(v) for v in self.augment(batch)]
        return batch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        views = batch.get("views")
        if views is None:
            views = [self.to_model_layout(v) for v in self.augment(batch)]
        out = self.compute_loss(views, batch)
        loss = out["loss"]
        n = views[0].shape[0]
        for key, value in out.items():
            if key != "embedding" and isinstance(value, Tensor) and value.dim() == 0:
                self.log(f"train/{key}", value.detach(), on_step=True, prog_bar=key == "loss", batch_size=n)
        if self.probe is not None and "embedding" in out and "label" in batch:
            probe_loss, acc = self._probe_step(out["embedding"], batch["label"])
            loss = loss + probe_loss
            self.log("probe/loss", probe_loss.detach(), on_step=True, batch_size=n)
            self.log("probe/acc", acc, on_step=True, prog_bar=True, batch_size=n)
            # the epoch mean is far less noisy than one small batch
            self.log("probe/acc_epoch", acc, on_step=False, on_epoch=True, batch_size=n)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, batch_size=n)
        if self._ema_pairs:
            self.log("train/ema_momentum", self.ema_momentum(), on_step=True, batch_size=n)
        return loss

    def on_fit_start(self) -> None:
        if self.cfg.trainer.channels_last and self.device.type == "cuda":
            self.to(memory_format=torch.channels_last_3d)  # 5-D conv weights; inputs follow in to_model_layout

    def _probe_step(self, embedding: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Linear probe on the DETACHED embedding: its loss reaches only ``self.probe``."""
        labels = torch.as_tensor(labels, device=embedding.device).long()
        logits = self.probe(embedding.detach().float())
        loss = F.cross_entropy(logits, labels, ignore_index=-1)
        valid = labels >= 0
        acc = ((logits.argmax(dim=1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return loss, acc.detach()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set every scheduled group's lr for this step (warmup + cosine as a pure function of the
        step, so a resumed run has no scheduler state to get out of step)."""
        step = self.global_step
        for group in self.trainer.optimizers[0].param_groups:
            # groups without "base_lr" come from a subclass's own configure_optimizers/scheduler
            if group.get("scheduled", True) and "base_lr" in group:
                group["lr"] = group["base_lr"] * self._lr_factor(step)

    def _lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        if o.lr == 0:
            return 0.0
        total = self.total_steps
        warmup = int(round(total * min(1.0, o.warmup_epochs / max(1, self.cfg.trainer.max_epochs))))
        return warmup_cosine(step, total, warmup, o.lr, o.warmup_start_lr, o.final_lr) / o.lr

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # EMA right after the optimiser step, inside the step: a checkpoint written at the end
        # of this batch already holds the updated target (exact resume).
        if self._ema_pairs:
            m = self.ema_momentum()
            for online, target in self._ema_pairs:
                ema_update(self.get_submodule(online), self.get_submodule(target), m)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = split_decay_groups(self.param_groups(), cfg.optim.weight_decay) + self.probe_groups()
        return self.start_schedule(build_optimizer(cfg.optim, groups, device_type=self.device.type))

    def probe_groups(self) -> list[dict[str, Any]]:
        """The online probe's optimiser group (its own fixed lr, no decay, no LARS, no schedule), if any."""
        if self.probe is None:
            return []
        return [{"name": "probe", "params": list(self.probe.parameters()), "lr": self.cfg.method.probe_lr,
                 "weight_decay": 0.0, "lars_exclude": True, "scheduled": False}]

    def start_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Record each group's peak lr as ``base_lr`` and set the lr of step 0; from then on
        :meth:`on_train_batch_start` sets it every step (groups with ``scheduled: False`` keep theirs)."""
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
            if group.get("scheduled", True):
                group["lr"] = group["base_lr"] * self._lr_factor(0)
        return optimizer

    def configure_model(self) -> None:
        """SyncBN when distributed; optional ``torch.compile`` of the encoder."""
        if getattr(self, "_configured", False):
            return
        self._configured = True
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and trainer.world_size > 1 and self.cfg.trainer.sync_batchnorm:
            device_type = trainer.strategy.root_device.type
            for name, child in list(self.named_children()):
                if name != "probe":
                    setattr(self, name, convert_sync_batchnorm(child, device_type))
        if self.cfg.trainer.compile:
            self.encoder.compile()

    # ---- checkpoint state --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cuda = [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
        np_state = np.random.get_state()
        checkpoint["vidssl"] = {
            "global_step": int(self.global_step),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": cuda,
            # plain Python values so the checkpoint loads with weights_only=True
            "rng_numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "rng_python": _python_rng_to_plain(random.getstate()),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("vidssl")
        if not state:
            return
        self._resume_step = int(state["global_step"])
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        kind, keys, pos, has_gauss, gauss = state["rng_numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        random.setstate(_python_rng_from_plain(state["rng_python"]))


def _python_rng_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_plain(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)

