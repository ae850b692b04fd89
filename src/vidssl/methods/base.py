"""The training engine every method shares: :class:`SSLMethod`.

A method is a small subclass (solo-learn style) that declares

- ``Config``: its dataclass (a subclass of :class:`~vidssl.methods.config.MethodConfig`), the
  preset's ``method:`` section;
- ``build()``: its heads (and EMA targets via :meth:`SSLMethod.add_target`);
- ``data_streams()``: the streams it trains on, ``{name: DataStream(plan, data)}``; the default is
  one stream ``"video"`` over ``cfg.data`` with the plan of :meth:`SSLMethod.make_plan`;
- ``augment(batch) -> dict[str, Tensor]``: device-side augmentation of the uint8 batch
  (``batch[stream]["clips"][view]``) into named float views;
- ``compute_loss(views, batch) -> dict``: ``"loss"`` plus scalars to log, and ``"embedding"``
  (``B×D`` online embedding of the main encoder) for the online probe and the collapse monitor;
- ``param_groups()`` (optional): fully specified optimiser groups (:func:`vidssl.optim.param_group`).

The base owns the rest: the optimiser over those groups with the one lr schedule
(:func:`vidssl.optim.lr_factor`, a pure function of the step, so a resumed run has no
scheduler state), per-group gradient multipliers, EMA targets with the cosine momentum
schedule (updated inside ``optimizer_step``, so a checkpoint written at the end of a batch
already holds them), an online linear probe on detached embeddings, a collapse monitor
(embedding spread and effective rank), SyncBN when distributed, RNG state in checkpoints, and
the encoder's input contract. The data (loaders, samplers, resume positions) belongs to
:class:`vidssl.data.module.StreamDataModule`; the ``Trainer`` around both is built by
:mod:`vidssl.methods.train`.

The main video encoder is ``self.encoder`` (state keys ``encoder.*``); checkpoints carry
``hyper_parameters["encoder"] = {"name", "kwargs", "contract"}`` so
``vidssl.models.load_encoder`` can rebuild it from a ``.ckpt`` and feed it correctly.
"""

from __future__ import annotations

import copy
import random
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.config import to_dict
from vidssl.distributed import convert_sync_batchnorm
from vidssl.errors import ConfigError
from vidssl.methods.config import MethodConfig, PretrainConfig, pretrain_config_from_dict
from vidssl.methods.guards import check_loss, raise_if_diverged
from vidssl.models.contract import InputContract
from vidssl.optim import apply_grad_multipliers, build_optimizer, cosine_momentum, default_param_groups, lr_factor

PRIMARY_STREAM = "video"


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``θ_target ← m·θ_target + (1 - m)·θ_online`` over parameters only (PySlowFast
    ``_update_history``; the target's BN runs in train mode, so its buffers are not copied)."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise RuntimeError("EMA target and online network differ in structure")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)


def online_probe(embed_dim: int, num_classes: int) -> nn.Module:
    """The online linear probe: ``BatchNorm1d(affine=False)`` then ``Linear``; ``B×D`` → ``B×classes``.

    The parameter-free BatchNorm standardises the embedding (as MAE's linear probing does) so a
    fixed probe learning rate suits every backbone and every stage of training: with a bare
    ``Linear`` at lr 0.1, embeddings that a logistic regression classifies at 23.6 % gave 16.7 %
    on the training batches (the demo's KVMem run after 800 steps); with the BatchNorm, 23.6 %.
    """
    return nn.Sequential(nn.BatchNorm1d(embed_dim, affine=False), nn.Linear(embed_dim, num_classes))


@torch.no_grad()
def collapse_stats(embedding: Tensor) -> dict[str, Tensor]:
    """Signs of representational collapse in a batch of embeddings ``B×D``.

    - ``embedding_std``: mean over dimensions of the batch standard deviation of the
      L2-normalised embeddings, times ``sqrt(D)``; about 1 for well-spread embeddings, 0 when
      every sample maps to the same point (BYOL-style collapse).
    - ``effective_rank``: ``exp`` of the entropy of the normalised singular values of the
      centred batch (Roy & Vetterli, 2007); 1 when all embeddings lie on a line, up to
      ``min(B, D)``.

    Example:
        >>> stats = collapse_stats(torch.ones(8, 4))
        >>> float(stats["embedding_std"]), float(stats["effective_rank"])
        (0.0, 1.0)
    """
    z = F.normalize(embedding.detach().float(), dim=1)
    std = z.std(dim=0).mean() * z.shape[1] ** 0.5 if z.shape[0] > 1 else z.new_zeros(())
    s = torch.linalg.svdvals(z - z.mean(dim=0, keepdim=True))
    total = s.sum()
    p = s / total.clamp_min(1e-12)
    entropy_rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    rank = torch.where(total <= 1e-12, torch.ones_like(entropy_rank), entropy_rank)  # no host read-back
    return {"embedding_std": std, "effective_rank": rank}


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 5-D parameter/buffer (3-D conv weights) in ``channels_last_3d``, every 4-D one (2-D convs:
    audio nets, image encoders) in ``channels_last``; the rest unchanged. In place; returns ``model``.

    ``model.to(memory_format=torch.channels_last_3d)`` cannot do this: it raises "required rank 5
    tensor" on the first 4-D weight, so any method with a 2-D conv (GDT's audio ResNet, BaSSL's shot
    encoder) failed at the start of a GPU run.
    """
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is None or tensor.dim() not in (4, 5):
                    continue
                layout = torch.channels_last_3d if tensor.dim() == 5 else torch.channels_last
                tensor.data = tensor.data.contiguous(memory_format=layout)
    return model


class SSLMethod(L.LightningModule):
    """Base of every self-supervised method (see the module docstring for the hooks).

    Args:
        config: a :class:`PretrainConfig` or its plain-dict form (as stored in checkpoints).
        num_classes: classes of the primary stream's data (0 = unlabeled: no online probe).
        encoder: ignored; stored in the hyper-parameters for ``load_encoder``.
    """

    Config: ClassVar[type] = MethodConfig
    # Per-channel normalisation of the encoder's input after scaling pixels to [0, 1]; saved in
    # the encoder's input contract, so evaluation feeds the encoder what pretraining fed it.
    input_mean: ClassVar[float] = 0.45
    input_std: ClassVar[float] = 0.225
    # The view protocol (vidssl.eval.features.PROTOCOLS) the method evaluates its encoder with.
    eval_views: ClassVar[str] = "fgkvmem"

    def __init__(self, config: PretrainConfig | dict, num_classes: int = 0, encoder: dict | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, PretrainConfig) else pretrain_config_from_dict(copy.deepcopy(config))
        if not isinstance(cfg.method, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a '{self.Config.__name__}' method config, got {type(cfg.method).__name__}")
        self.cfg = cfg
        m = cfg.method
        from vidssl.models.backbones import build_backbone

        self.encoder = build_backbone(m.backbone, **m.backbone_kwargs)
        self.embed_dim = int(self.encoder.embed_dim)
        self.num_classes = int(num_classes)
        self.probe = online_probe(self.embed_dim, num_classes) if (num_classes > 0 and m.probe) else None
        self._ema_pairs: list[tuple[str, str]] = []  # (online, target) attribute names
        self.build()
        if cfg.trainer.activation_checkpointing:
            self.enable_activation_checkpointing()
        self.save_hyperparameters({"config": to_dict(cfg), "num_classes": int(num_classes),
                                   "encoder": {"name": m.backbone, "kwargs": dict(m.backbone_kwargs),
                                               "contract": self.input_contract().to_dict()}})

    # ---- hooks a method implements ----------------------------------------------------------

    def build(self) -> None:
        """Create heads and EMA targets (:meth:`add_target`)."""

    def make_plan(self):
        """The plan (``vidssl.data.sampling``) of the primary stream's views."""
        raise NotImplementedError

    def data_streams(self) -> dict:
        """The streams this method trains on: ``{name: DataStream}``, the primary stream first."""
        from vidssl.data.module import DataStream

        return {PRIMARY_STREAM: DataStream(self.make_plan(), self.cfg.data)}

    def augment(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Device-side augmentation: uint8 batch → named float views (e.g. ``B×C×T×H×W``)."""
        raise NotImplementedError

    def compute_loss(self, views: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Loss dict with key ``"loss"``; ``"embedding"`` (``B×D``) feeds the probe and the monitor."""
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Fully specified trainable parameter groups (:func:`vidssl.optim.param_group`), probe
        excluded. Default: every trainable parameter, biases and norm parameters without decay
        and LARS. Override to give heads their own multipliers."""
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad and not n.startswith("probe.")]
        return default_param_groups("online", named)

    def input_contract(self) -> InputContract:
        """How ``self.encoder`` must be fed (saved with the exported encoder and in checkpoints)."""
        m = self.cfg.method
        return InputContract(modality="video", value_range=(0.0, 1.0), mean=(self.input_mean,) * 3,
                             std=(self.input_std,) * 3, num_frames=m.num_frames,
                             stride=None if m.target_fps else m.stride,
                             fps=m.target_fps / m.stride if m.target_fps else None,
                             crop_size=m.crop_size, canvas=m.canvas,
                             input_transform="residual_frames" if m.backbone_kwargs.get("residual_frames") else "",
                             eval_views=m.eval_views or self.eval_views)

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

    def enable_activation_checkpointing(self) -> None:
        """``trainer.activation_checkpointing``: the blocks of every backbone the method trains recompute their
        activations in the backward pass (:mod:`vidssl.models.activation_checkpointing`).

        The main encoder must have such blocks (a ConfigError names the option and the backbone if not);
        the method's other trainable backbones (BraVe's broad encoders, GDT's and STiCA's audio encoders)
        are wrapped where they have them. Frozen modules (EMA targets, BEVT's tokenizer) are left as they are.
        """
        from vidssl.models import activation_checkpointing as ac

        backbone = f"'{self.cfg.method.backbone}'"
        ac.enable_activation_checkpointing(self.encoder, backbone, "trainer.activation_checkpointing")
        for name, child in self.named_children():
            if name not in ("encoder", "probe"):
                ac.checkpoint_blocks(child)

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

    def lr_factor(self, step: int) -> float:
        """The schedule's factor at ``step`` (:func:`vidssl.optim.lr_factor` over this run's length)."""
        return lr_factor(self.cfg.optim, step, self.total_steps, self.cfg.trainer.max_epochs)

    def frame_rate(self, stride: int) -> dict[str, Any]:
        """``ViewSpec`` keywords for every ``stride``-th frame at the method's ``target_fps``
        (:func:`vidssl.data.sampling.frame_rate`)."""
        from vidssl.data.sampling import frame_rate

        return frame_rate(stride, self.cfg.method.target_fps)

    def to_model_layout(self, x: Tensor) -> Tensor:
        """Channels-last on GPU (faster convs under bf16): ``channels_last_3d`` for a 5-D input, ``channels_last``
        for a 4-D one (spectrograms, images); unchanged on CPU."""
        if self.cfg.trainer.channels_last and x.is_cuda and x.dim() in (4, 5):
            return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
        return x

    def primary_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch of the primary stream (labels, indices) out of ``{stream: batch}``."""
        return batch[next(iter(batch))]

    def make_views(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``augment`` + model layout: the named views ``compute_loss`` receives."""
        # augmentation in float32, outside the step's autocast (as the data would arrive from a CPU pipeline)
        with torch.autocast(device_type=self.device.type, enabled=False):
            views = self.augment(batch)
        if not isinstance(views, dict):
            raise TypeError(f"{type(self).__name__}.augment must return a dict of named views, got {type(views).__name__}")
        return {name: self.to_model_layout(v) for name, v in views.items()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        views = self.make_views(batch)
        out = self.compute_loss(views, batch)
        loss = out["loss"]
        if not check_loss(self, loss, out):  # non-finite: stop (TrainingDiverged) or skip this step
            return None
        primary = self.primary_batch(batch)
        n = int(primary["label"].shape[0]) if "label" in primary else 1
        for key, value in out.items():
            if key != "embedding" and isinstance(value, Tensor) and value.dim() == 0:
                self.log(f"train/{key}", value.detach(), on_step=True, prog_bar=key == "loss", batch_size=n)
        self.log("train/loss_epoch", loss.detach(), on_step=False, on_epoch=True, batch_size=n)
        embedding = out.get("embedding")
        if self.probe is not None and embedding is not None and "label" in primary:
            probe_loss, acc = self._probe_step(embedding, primary["label"])
            loss = loss + probe_loss
            self.log("probe/loss", probe_loss.detach(), on_step=True, batch_size=n)
            self.log("probe/acc", acc, on_step=True, prog_bar=True, batch_size=n)
            # best.ckpt is chosen on the epoch mean: one small batch is far too noisy
            self.log("probe/acc_epoch", acc, on_step=False, on_epoch=True, batch_size=n)
        every = max(1, self.cfg.trainer.monitor_every)
        if embedding is not None and self.global_step % every == 0:
            for key, value in collapse_stats(embedding).items():
                self.log(f"monitor/{key}", value, on_step=True, batch_size=n)
        # Python numbers become device tensors when logged (a host-to-device copy that waits for the
        # GPU): only on the steps whose values reach the logger
        logs = self._trainer is None or (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0
        if logs and self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, batch_size=n)
        if logs and self._ema_pairs:
            self.log("train/ema_momentum", self.ema_momentum(), on_step=True, batch_size=n)
        return loss

    def on_fit_start(self) -> None:
        if self.cfg.trainer.channels_last and self.device.type == "cuda":
            to_channels_last(self)  # conv weights; inputs follow in to_model_layout

    def _probe_step(self, embedding: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Linear probe on the DETACHED embedding: its loss reaches only ``self.probe``."""
        labels = torch.as_tensor(labels, device=embedding.device).long()
        logits = self.probe(embedding.detach().float())
        loss = F.cross_entropy(logits, labels, ignore_index=-1)
        valid = labels >= 0
        acc = ((logits.argmax(dim=1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return loss, acc.detach()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set every scheduled group's lr for this step (a pure function of the step)."""
        factor = self.lr_factor(self.global_step)
        for group in self.trainer.optimizers[0].param_groups:
            if group.get("scheduled", True):
                group["lr"] = group["base_lr"] * factor

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Every ``trainer.log_every`` steps, read back the deferred finiteness check (GPU)."""
        if self.global_step % max(1, self.cfg.trainer.log_every) == 0:
            raise_if_diverged(self)

    def on_train_end(self) -> None:
        raise_if_diverged(self)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Per-group gradient multipliers (``grad_mult``), then clipping of the global gradient norm at
        ``optim.grad_clip``, before the step.

        Clipped here rather than through Lightning's ``gradient_clip_val``: Lightning refuses to clip
        for an optimiser with fused kernels under mixed precision (vidssl's AdamW/SGD on CUDA), and
        ``clip_grad_norm_`` (foreach, no finiteness check) never reads the norm back to the host."""
        apply_grad_multipliers(optimizer)
        max_norm = float(self.cfg.optim.grad_clip)
        if max_norm > 0:
            grads = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
            if scaler is not None and optimizer.defaults.get("fused"):
                # fp16 with a fused optimiser: the gradients are still scaled here (the optimiser
                # unscales inside its step), so the bound is scaled the same way
                max_norm *= float(scaler.get_scale())
            torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # EMA right after the optimiser step, inside the step: a checkpoint written at the end
        # of this batch already holds the updated target (exact resume). A step skipped for a
        # non-finite loss (vidssl.methods.guards) leaves the targets alone too.
        if self._ema_pairs and not getattr(self, "_skip_step", False):
            m = self.ema_momentum()
            for online, target in self._ema_pairs:
                ema_update(self.get_submodule(online), self.get_submodule(target), m)

    def probe_groups(self) -> list[dict[str, Any]]:
        """The online probe's optimiser group (its own fixed lr, no decay, no LARS, no schedule), if any."""
        if self.probe is None:
            return []
        return [{"name": "probe", "params": list(self.probe.parameters()), "lr": self.cfg.method.probe_lr,
                 "weight_decay": 0.0, "lars": False, "scheduled": False}]

    def configure_optimizers(self):
        """The optimiser over :meth:`param_groups` + the probe; each group's peak lr is kept as
        ``base_lr`` and the lr of step 0 set (then :meth:`on_train_batch_start` sets it every step)."""
        groups = self.param_groups()
        seen: set[int] = set()
        for group in groups:
            for p in group["params"]:
                if id(p) in seen:
                    raise ConfigError(f"parameter in two optimiser groups (group '{group.get('name')}')")
                seen.add(id(p))
        optimizer = build_optimizer(self.cfg.optim, groups + self.probe_groups(), device_type=self.device.type)
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
            if group.get("scheduled", True):
                group["lr"] = group["base_lr"] * self.lr_factor(0)
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
            self.encoder.compile(backend=self.cfg.trainer.compile_backend)

    # ---- checkpoint state --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise_if_diverged(self)  # a deferred finiteness check is read before anything is written
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
