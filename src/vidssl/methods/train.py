"""Run a pretraining: config → data → method → Lightning ``Trainer`` → run directory.

``pretrain(cfg, out)`` writes into ``out``:

- ``config.yaml``: the resolved config;
- ``checkpoints/last.ckpt`` (every ``trainer.checkpoint_every`` steps and at the end) and
  ``checkpoints/best.ckpt`` (chosen at every epoch end: highest epoch-mean online-probe accuracy
  ``probe/acc_epoch`` when the data has labels, else lowest epoch-mean ``train/loss_epoch``),
  written atomically;
- ``metrics.csv``: Lightning's CSV log (one row per logged step, ``probe/acc`` when labelled);
- ``tensorboard/``: the same scalars for TensorBoard;
- ``encoder.safetensors``: the main video encoder with its input contract (``vidssl.models.save_encoder``);
- ``skipped_videos.json``: unreadable videos skipped during training, gathered from every process
  (path -> reason; written only when there are any).

``resume=True`` continues from ``checkpoints/last.ckpt``: weights, optimiser, lr schedule,
EMA targets, DINO centre, loop counters and RNG state; every stream's sampler position follows
from the step (:mod:`vidssl.data.samplers`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from vidssl.config import load_yaml, preset_path, save_yaml, to_dict
from vidssl.data.module import StreamDataModule, open_manifest, prepare_data_root
from vidssl.errors import ConfigError
from vidssl.methods.config import PretrainConfig, apply_pretrain_overrides, pretrain_config_from_dict


def load_pretrain_config(preset: str, overrides: list[str] | None = None) -> PretrainConfig:
    """Read preset ``preset`` (a name from ``vidssl pretrain --list-presets`` or a YAML path) and apply
    ``key=value`` overrides."""
    cfg = pretrain_config_from_dict(load_yaml(preset_path(preset)))
    return apply_pretrain_overrides(cfg, list(overrides or []))


def _atomic_checkpoint_io():
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write to ``FILE.tmp`` then rename: a killed run never leaves a half-written checkpoint."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)

    return AtomicCheckpointIO()


def _csv_logger(out: Path, resume_step: int | None, flush_every: int):
    """Lightning's CSVLogger writing ``out/metrics.csv``. On resume it keeps the earlier rows (those
    before the checkpoint's step; rows logged after it are trained again) instead of deleting them."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    previous: list[dict[str, str]] = []
    path = out / "metrics.csv"
    if resume_step is not None and path.is_file():
        with open(path, newline="") as f:
            previous = [r for r in csv.DictReader(f) if r.get("step", "") != "" and int(r["step"]) < resume_step]
        path.replace(out / "metrics.csv.before-resume")

    class ResumingCSVLogger(CSVLogger):
        @property
        def experiment(self):
            if self._experiment is None:
                writer = super().experiment
                if previous:
                    keys = sorted(set().union(*previous))
                    writer.metrics_keys = keys
                    with open(writer.metrics_file_path, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=keys)
                        w.writeheader()
                        w.writerows(previous)
            return self._experiment

    return ResumingCSVLogger(out, name="", version="", flush_logs_every_n_steps=flush_every)


def _gather_skipped(data: StreamDataModule) -> dict[str, str]:
    """Unreadable videos skipped by every process's loaders (a collective when distributed)."""
    from vidssl.distributed import gather_objects

    merged: dict[str, str] = {}
    for part in gather_objects(data.skipped_videos()):
        for path, reason in part.items():
            merged.setdefault(path, reason)
    return merged


def write_json_atomic(data: Any, path: Path) -> None:
    import json

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _trainer_kwargs(cfg: PretrainConfig) -> dict[str, Any]:
    t = cfg.trainer
    cuda = torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda")
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    devices: Any = t.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return dict(accelerator=t.accelerator, devices=devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
                log_every_n_steps=t.log_every, enable_progress_bar=t.progress_bar,
                gradient_clip_val=cfg.optim.grad_clip or None, use_distributed_sampler=False,
                num_sanity_val_steps=0, benchmark=cuda)


def pretrain(cfg: PretrainConfig, out: str | os.PathLike, resume: bool = False, callbacks: list | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Pretrain ``cfg.method`` and write the run directory ``out`` (see the module docstring).

    ``callbacks`` are extra Lightning callbacks (tests use one to stop a run mid-way).
    Returns ``out``.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from vidssl.methods import METHODS

    out = Path(out).expanduser()
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    if not resume and last.is_file():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    root = prepare_data_root(cfg.data, log)
    manifest = open_manifest(root, cfg.data.format)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(to_dict(cfg), out / "config.yaml")
    if not resume:
        L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)

    method = METHODS[cfg.method.name](cfg, num_classes=manifest.num_classes)
    streams = method.data_streams()
    data = StreamDataModule(streams, seed=cfg.trainer.seed, manifests={next(iter(streams)): manifest}, log=log)
    labelled = method.probe is not None
    every = max(1, cfg.trainer.checkpoint_every)
    checkpoints = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="last-step", save_last=True, save_top_k=0,
                        every_n_train_steps=every, enable_version_counter=False),
        # chosen on an epoch-level signal, never on one training batch
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="probe/acc_epoch" if labelled else "train/loss_epoch",
                        mode="max" if labelled else "min", save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
    ]
    resume_step = torch.load(last, weights_only=True, map_location="cpu")["global_step"] if resume else None
    loggers = [_csv_logger(out, resume_step, flush_every=10 * cfg.trainer.log_every),
               TensorBoardLogger(out, name="tensorboard", version="")]
    trainer = L.Trainer(**_trainer_kwargs(cfg), logger=loggers, callbacks=checkpoints + list(callbacks or []),
                        plugins=[_atomic_checkpoint_io()], default_root_dir=out)
    trainer.fit(method, datamodule=data, ckpt_path=str(last) if resume else None)
    trainer.save_checkpoint(last, weights_only=False)  # full state: optimizer, loops, callbacks
    skipped = _gather_skipped(data)
    if trainer.is_global_zero:
        from vidssl.models import save_encoder

        m = cfg.method
        save_encoder(method.encoder, out / "encoder.safetensors", name=m.backbone, kwargs=dict(m.backbone_kwargs),
                     contract=method.input_contract())
        if skipped:
            write_json_atomic(skipped, out / "skipped_videos.json")
            log(f"skipped {len(skipped)} unreadable videos (listed in {out / 'skipped_videos.json'}): "
                + ", ".join(sorted(skipped)[:10]))
        log(f"pretraining done: {out} (step {trainer.global_step}); encoder at {out / 'encoder.safetensors'}")
    return out
