"""The typed configuration of a pretraining run: ``method``, ``data``, ``streams``, ``optim``, ``trainer``.

A preset (``src/vidssl/presets/*.yaml``) is the plain-dict form of :class:`PretrainConfig`;
``method.name`` picks the method's own dataclass (a subclass of :class:`MethodConfig`) from
:data:`vidssl.methods.METHODS`. Unknown keys and wrong types are a ``ConfigError`` that names the
key; ``key=value`` overrides go through :func:`vidssl.config.apply_overrides`, the one parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vidssl.config import _suggest, apply_overrides, checked, from_dict
from vidssl.errors import ConfigError
from vidssl.optim import OptimConfig

__all__ = ["MethodConfig", "DataConfig", "TrainerConfig", "PretrainConfig", "pretrain_config_from_dict",
           "apply_pretrain_overrides"]


#: Lightning's precision names (``trainer.precision``), and ``auto``.
PRECISIONS = ("auto", "64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


@dataclass
class MethodConfig:
    """Settings every method has; a method's ``Config`` subclasses this.

    The main video views: ``num_frames`` frames every ``stride`` frames, decoded to a
    ``canvas``×``canvas`` square by the workers and randomly resized-cropped to ``crop_size``
    on the device. ``target_fps`` (PySlowFast's ``TARGET_FPS``, BraVe's 25 fps) counts the stride
    in frames of a video resampled to that rate, whatever the source rate; None counts source frames. ``eval_views`` names the view protocol (``vidssl.eval.features.PROTOCOLS``)
    the exported encoder is evaluated with by default ("" = the method's own).
    """

    name: str = ""
    backbone: str = "r3d18"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    num_frames: int = checked(16, ge=1)
    stride: int = checked(4, ge=1)
    target_fps: float | None = checked(None, gt=0)
    canvas: int = checked(128, ge=1)
    crop_size: int = checked(112, ge=1)  # <= canvas (checked by vidssl.config.check_values)
    ema_momentum: float = checked(0.996, ge=0, le=1)
    ema_final_momentum: float = checked(1.0, ge=0, le=1)
    probe: bool = True
    probe_lr: float = checked(0.1, ge=0)
    eval_views: str = ""


@dataclass
class DataConfig:
    """Where one stream's videos (or still images) are and how they are loaded.

    ``format`` is the layout of ``root`` (:data:`vidssl.data.layouts.LAYOUTS`: ``folder``, ``csv``,
    ``ucf101``, ``hmdb51``, ``kinetics``, ``movienet``, ``movienet_keyframes``, ``images``), ``auto`` to
    detect it. ``movienet_keyframes`` reads MovieNet's released keyframes, one folder per movie read as a
    video of keyframes (image views only; BaSSL's input). ``images``
    reads still images in class folders (ImageNet's ``ROOT/train/CLASS/*.JPEG``); such a stream can
    only feed image views (e.g. ``streams.image.root=/data/imagenet streams.image.format=images`` for
    BEVT's image stream), and ``decoder`` does not apply to it (Pillow reads the images).
    ``batch_size`` is the GLOBAL batch (as in PySlowFast); each process loads
    ``batch_size / world_size``. ``repeats`` > 1 samples that many items from one decode of a
    video (repeated augmentation; the batch then holds ``batch_size · repeats`` samples).
    ``demo_size``/``demo_seed`` are used only when ``root`` does not exist and ``generate_demo``
    is true (the embedded dataset is then written there first).
    """

    root: str = "data/demo"
    format: str = "auto"
    split: Literal["train", "test", "all"] = "train"
    fold: int = checked(1, ge=1)
    batch_size: int = checked(64, ge=2, why="BatchNorm and the batch-wise losses need at least 2 clips")
    repeats: int = checked(1, ge=1)
    # DataLoader workers per process; -1 = one per core this process may use (its share of the node's
    # cores when several processes train on one node). Each worker decodes with one thread.
    num_workers: int = checked(4, ge=0, also=(-1,))
    # batches each worker prepares ahead (PyTorch's prefetch_factor)
    prefetch_factor: int = checked(2, ge=1)
    decoder: str = checked("pyav", choices=("pyav", "torchcodec"))
    generate_demo: bool = False
    demo_size: Literal["tiny", "default"] = "default"
    demo_seed: int = 0
    # which embedded dataset generate_demo writes: the digit action clips, the second action dataset
    # ("shapes": other objects, motions, resolution and frame rate) or the "movie" variant (scenes of shots)
    demo_variant: Literal["clips", "shapes", "movies"] = "clips"


@dataclass
class TrainerConfig:
    """The Lightning ``Trainer``: length, precision, devices, logging and checkpoints.

    ``precision="auto"`` is bf16-mixed on GPU and 32-true on CPU. The seeds' code trained in fp32:
    bf16 is a departure for speed (``trainer.precision=32-true`` gives the seeds' numerics). ``devices`` is ``"auto"``
    or a number. ``checkpoint_every`` is in optimiser steps (``last.ckpt``); ``best.ckpt`` is
    chosen at the end of every epoch on the epoch-mean online-probe accuracy (the epoch-mean
    loss when the data has no labels). ``monitor_every``: steps between collapse-monitor logs.
    ``max_nonfinite_steps``: a non-finite loss stops the run (0, the default) or, up to this many
    times in a run, skips its step (:mod:`vidssl.methods.guards`). ``accumulate_grad_batches``: N
    loader batches per optimiser step, so a seed's global batch fits on fewer GPUs (``data.batch_size``
    is split over the processes; per optimiser step the run sees ``data.batch_size`` × N); steps, schedules, checkpoints and the data position count optimiser steps. Batch-wise
    terms (contrastive negatives, BatchNorm statistics) still see one loader batch at a time.
    ``compile``: the encoder's forward goes through ``torch.compile`` with ``compile_backend`` (``inductor``;
    ``aot_eager`` traces without generating kernels, for checking a model compiles). Off by default: it
    pays on a GPU for some methods and not yet measured for others (BENCHMARKS.md); presets turn it on
    where it was measured to pay.
    ``activation_checkpointing``: the backbones' blocks (ResNet units, Swin blocks) keep only their inputs
    in the forward pass and are recomputed in the backward pass (:mod:`vidssl.models.activation_checkpointing`),
    so a seed's per-GPU batch fits in less GPU memory for about one more forward of the backbones per step;
    losses, gradients and BatchNorm running statistics are those of the plain run. A backbone without such
    blocks is a ConfigError.
    """

    max_epochs: int = checked(400, ge=1)
    max_steps: int = checked(-1, ge=1, also=(-1,), why="-1: no limit")
    precision: str = checked("auto", choices=PRECISIONS)
    accelerator: str = checked("auto", choices=("auto", "cpu", "gpu", "cuda", "mps", "tpu"))
    devices: str = checked("auto", pattern=r"auto|-1|\d+|\d+(\s*,\s*\d+)*,?|\[\s*\d+(\s*,\s*\d+)*\s*\]",
                           why="'auto', a number of devices, -1 for all, or a list such as 0,1")
    num_nodes: int = checked(1, ge=1)
    strategy: str = "auto"
    log_every: int = checked(10, ge=1)
    checkpoint_every: int = checked(500, ge=1)
    monitor_every: int = checked(50, ge=1)
    seed: int = 0
    compile: bool = False
    compile_backend: str = "inductor"
    channels_last: bool = True
    sync_batchnorm: bool = True
    progress_bar: bool = True
    max_nonfinite_steps: int = checked(0, ge=0)
    accumulate_grad_batches: int = checked(1, ge=1, why="batches per optimiser step")
    activation_checkpointing: bool = False


@dataclass
class PretrainConfig:
    """A whole pretraining run.

    ``data`` is the primary stream's data (the one every method reads); ``streams`` holds the
    data of any further stream a method declares, by stream name (e.g. BEVT's ``image``).
    """

    method: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    streams: dict[str, DataConfig] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def stream_data(self, name: str) -> DataConfig:
        """The data config of secondary stream ``name``; a ConfigError that says what to set if absent."""
        if name not in self.streams:
            raise ConfigError(f"this method also trains on a stream '{name}': set streams.{name}.root=PATH "
                              f"(and streams.{name}.batch_size=N)")
        return self.streams[name]


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

    A bare trainer key (``max_steps``, ``max_epochs`` …) is accepted as ``trainer.<key>``.
    """
    return apply_overrides(cfg, overrides, build=pretrain_config_from_dict, shorthands=("trainer",))
