"""The typed configuration of a pretraining run: ``method``, ``data``, ``streams``, ``optim``, ``trainer``.

A preset (``src/vidssl/presets/*.yaml``) is the plain-dict form of :class:`PretrainConfig`;
``method.name`` picks the method's own dataclass (a subclass of :class:`MethodConfig`) from
:data:`vidssl.methods.METHODS`. Unknown keys and wrong types are a ``ConfigError`` that names the
key; ``key=value`` overrides go through :func:`vidssl.config.apply_overrides`, the one parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vidssl.config import _suggest, apply_overrides, from_dict
from vidssl.errors import ConfigError
from vidssl.optim import OptimConfig

__all__ = ["MethodConfig", "DataConfig", "TrainerConfig", "PretrainConfig", "pretrain_config_from_dict",
           "apply_pretrain_overrides"]


@dataclass
class MethodConfig:
    """Settings every method has; a method's ``Config`` subclasses this.

    The main video views: ``num_frames`` frames every ``stride`` source frames, decoded to a
    ``canvas``×``canvas`` square by the workers and randomly resized-cropped to ``crop_size``
    on the device. ``eval_views`` names the view protocol (``vidssl.eval.features.PROTOCOLS``)
    the exported encoder is evaluated with by default ("" = the method's own).
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
    eval_views: str = ""


@dataclass
class DataConfig:
    """Where one stream's videos are and how they are loaded.

    ``batch_size`` is the GLOBAL batch (as in PySlowFast); each process loads
    ``batch_size / world_size``. ``repeats`` > 1 samples that many items from one decode of a
    video (repeated augmentation; the batch then holds ``batch_size · repeats`` samples).
    ``demo_size``/``demo_seed`` are used only when ``root`` does not exist and ``generate_demo``
    is true (the embedded dataset is then written there first).
    """

    root: str = "data/demo"
    format: str = "auto"
    split: Literal["train", "test", "all"] = "train"
    fold: int = 1
    batch_size: int = 64
    repeats: int = 1
    num_workers: int = 4
    decoder: str = "pyav"
    generate_demo: bool = False
    demo_size: Literal["tiny", "default"] = "default"
    demo_seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.repeats < 1:
            raise ConfigError(f"data.repeats must be >= 1, got {self.repeats}")


@dataclass
class TrainerConfig:
    """The Lightning ``Trainer``: length, precision, devices, logging and checkpoints.

    ``precision="auto"`` is bf16-mixed on GPU and 32-true on CPU. ``devices`` is ``"auto"``
    or a number. ``checkpoint_every`` is in optimiser steps (``last.ckpt``); ``best.ckpt`` is
    chosen at the end of every epoch on the epoch-mean online-probe accuracy (the epoch-mean
    loss when the data has no labels). ``monitor_every``: steps between collapse-monitor logs.
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
    monitor_every: int = 50
    seed: int = 0
    compile: bool = False
    channels_last: bool = True
    sync_batchnorm: bool = True
    progress_bar: bool = True


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
