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
  (path -> reason; written only when there are any);
- ``invalid_views.json``: per view, the clips marked invalid (audio missing, undecodable or cut
  short: the method masks or drops them) out of all clips, and the videos they came from (written
  only when there are any; the running count is logged as ``data/invalid/<view>``).

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
from vidssl.data.module import InvalidViewLogger, StreamDataModule, open_manifest, prepare_data_root
from vidssl.errors import ConfigError, DataError, Interrupted, TrainingDiverged
from vidssl.io import atomic_write, output_dir, run_dir_lock, tensor_bytes
from vidssl.methods.config import PretrainConfig, apply_pretrain_overrides, pretrain_config_from_dict
from vidssl.methods.guards import BufferSnapshot, divergence_advice, first_nonfinite
from vidssl.methods.throughput import ThroughputLogger
from vidssl.progress import HeartbeatCallback, is_terminal, quiet_lightning


def load_pretrain_config(preset: str, overrides: list[str] | None = None) -> PretrainConfig:
    """Read preset ``preset`` (a name from ``vidssl pretrain --list-presets`` or a YAML path) and apply
    ``key=value`` overrides."""
    cfg = pretrain_config_from_dict(load_yaml(preset_path(preset)))
    return apply_pretrain_overrides(cfg, list(overrides or []))


def _atomic_checkpoint_io(cfg: PretrainConfig):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write to ``FILE.tmp`` then rename: a killed run never leaves a half-written checkpoint.
        Non-finite weights are never written (the previous checkpoint stays the last good one)."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            bad = first_nonfinite(checkpoint.get("state_dict", {}))
            if bad is not None:
                raise TrainingDiverged(f"training diverged by step {checkpoint.get('global_step')}: weight '{bad}' "
                                       f"is not finite, so {Path(path).name} was not written; {divergence_advice(cfg)}")
            # a full disk: partial file removed, previous checkpoint kept, one-line error (vidssl.io)
            atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), tensor_bytes(checkpoint), "a checkpoint")

    return AtomicCheckpointIO()


def _csv_logger(out: Path, resume_step: int | None, flush_every: int):
    """Lightning's CSVLogger writing ``out/metrics.csv``. On resume it keeps the earlier rows (those
    before the checkpoint's step; rows logged after it are trained again) instead of deleting them."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from lightning.fabric.utilities.rank_zero import rank_zero_only

    previous: list[dict[str, str]] = []
    path = out / "metrics.csv"
    # Only rank 0 logs, so only rank 0 touches the file: when every rank of a restarted torchrun group
    # moved it aside, the slower rank's rename raised FileNotFoundError (the restart test's flake).
    if resume_step is not None and path.is_file() and rank_zero_only.rank == 0:
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


def _fit(trainer, method, data, last: Path, resume: bool, out: Path) -> None:
    """``trainer.fit`` with vidssl's endings: a divergence names the checkpoint kept, and Ctrl-C (which
    Lightning turns into ``exit(1)``, leaving SIGINT ignored) becomes :class:`~vidssl.errors.Interrupted`
    (exit 130) saying how to resume."""
    import signal

    try:
        trainer.fit(method, datamodule=data, ckpt_path=str(last) if resume else None)
    except TrainingDiverged as exc:
        kept = (f"the last good checkpoint, {last} (step {_checkpoint_step(last)}), is kept" if last.is_file()
                else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{exc}. Stopped: {kept}; nothing else was written") from None
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left Ctrl-C ignored
        where = (f"the last checkpoint is step {_checkpoint_step(last)}" if last.is_file()
                 else "no checkpoint had been written yet, so a resume starts over")
        raise Interrupted(f"stopped at step {trainer.global_step}; {where}: resume with "
                          f"`vidssl pretrain --resume --out {out}`") from None


def _resume_step(last: Path) -> int:
    """The step of the checkpoint a run resumes from, read without executing any pickled code; a
    damaged or foreign file is a one-line error (it is never unpickled with code)."""
    try:
        ckpt = torch.load(last, weights_only=True, map_location="cpu")
        return int(ckpt["global_step"])
    except Exception as exc:  # noqa: BLE001 (UnpicklingError, a truncated zip, a missing key: all unusable)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--resume: {last} cannot be read safely as a vidssl checkpoint ({first[:160]}); it is damaged "
                          "or was not written by vidssl. Nothing of it was executed. Restore it or start a new run") from None


def _checkpoint_step(path: Path) -> int | str:
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])
    except Exception:  # only for a message: an unreadable file must not hide the divergence itself
        return "?"


def _gather_invalid(data: StreamDataModule) -> dict[str, dict[str, Any]]:
    """Clips marked invalid per view, summed over every process (a collective when distributed)."""
    from vidssl.distributed import gather_objects

    merged: dict[str, dict[str, Any]] = {}
    for part in gather_objects(data.invalid_views()):
        for view, entry in part.items():
            into = merged.setdefault(view, {"clips": 0, "invalid": 0, "videos": []})
            into["clips"] += entry["clips"]
            into["invalid"] += entry["invalid"]
            into["videos"] = sorted(set(into["videos"]) | set(entry["videos"]))
    return {view: entry for view, entry in merged.items() if entry["invalid"]}


def write_json_atomic(data: Any, path: Path) -> None:
    import json

    text = json.dumps(data, indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: tmp.write_text(text), len(text), path.name)


def _trainer_kwargs(cfg: PretrainConfig) -> dict[str, Any]:
    t = cfg.trainer
    cuda = torch.cuda.is_available() and t.accelerator in ("auto", "gpu", "cuda")
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    devices: Any = t.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return dict(accelerator=t.accelerator, devices=devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
                log_every_n_steps=t.log_every, enable_progress_bar=t.progress_bar and is_terminal(),
                use_distributed_sampler=False,  # optim.grad_clip: VideoSSLMethod.on_before_optimizer_step
                accumulate_grad_batches=t.accumulate_grad_batches,
                num_sanity_val_steps=0, benchmark=cuda)


def pretrain(cfg: PretrainConfig, out: str | os.PathLike, resume: bool = False, callbacks: list | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Pretrain ``cfg.method`` and write the run directory ``out`` (see the module docstring).

    ``callbacks`` are extra Lightning callbacks (tests use one to stop a run mid-way).
    Returns ``out``. The run directory is locked for the run (:func:`vidssl.io.run_dir_lock`): a
    second run into the same ``out`` is refused instead of interleaving its checkpoints with this one's.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    # rank 0 holds the lock; the other ranks of the same run share the directory
    with run_dir_lock(output_dir(out), hold=rank_zero_only.rank == 0):
        return _pretrain(cfg, out, resume, callbacks, log)


def _pretrain(cfg: PretrainConfig, out: str | os.PathLike, resume: bool, callbacks: list | None,
              log: Callable[[str], None]) -> Path:
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
    from vidssl.methods.resume import absolute_roots, check_resume_changes, saved_config

    cfg = absolute_roots(cfg)  # config.yaml names the data wherever a resume is started from
    if resume and (out / "config.yaml").is_file():  # the checkpoint belongs to the saved data and model
        check_resume_changes(saved_config(out), cfg, out)
        if not Path(cfg.data.root).exists():
            raise DataError(f"--resume: the run's data root {cfg.data.root} no longer exists (it is not regenerated: "
                            "the checkpoint belongs to that data)")
    resume_step = _resume_step(last) if resume else None  # a damaged or poisoned file fails here, early
    root = prepare_data_root(cfg.data, log)
    manifest = open_manifest(root, cfg.data.format)
    output_dir(out)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:  # the other ranks of a group read it (resume) while it is written
        save_yaml(to_dict(cfg), out / "config.yaml")
    if not resume:
        L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)

    method = METHODS[cfg.method.name](cfg, num_classes=manifest.num_classes)
    streams = method.data_streams()
    data = StreamDataModule(streams, seed=cfg.trainer.seed, manifests={next(iter(streams)): manifest}, log=log)
    labelled = method.probe is not None
    audio_views = tuple(v.name for s in streams.values() for v in s.plan.views if v.kind == "audio")
    every = max(1, cfg.trainer.checkpoint_every)
    checkpoints = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="last-step", save_last=True, save_top_k=0,
                        every_n_train_steps=every, enable_version_counter=False),
        # chosen on an epoch-level signal, never on one training batch
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="probe/acc_epoch" if labelled else "train/loss_epoch",
                        mode="max" if labelled else "min", save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
    ]
    from lightning.pytorch.callbacks import ModelSummary

    # the plain summary goes through logging, where quiet_lightning drops its "Total FLOPs: 0" line
    throughput = ThroughputLogger()  # throughput/data_wait_fraction and samples_per_s every step
    extra = [BufferSnapshot(), InvalidViewLogger(audio_views), ModelSummary(max_depth=1), throughput]
    if cfg.trainer.progress_bar and not is_terminal():
        extra.append(HeartbeatCallback())  # a log, not a terminal: a plain line every ~30 s instead of a bar
    with quiet_lightning():
        loggers = [_csv_logger(out, resume_step, flush_every=10 * cfg.trainer.log_every),
                   TensorBoardLogger(out, name="tensorboard", version="")]
        trainer = L.Trainer(**_trainer_kwargs(cfg), logger=loggers, callbacks=checkpoints + extra + list(callbacks or []),
                            plugins=[_atomic_checkpoint_io(cfg)], default_root_dir=out)
        _fit(trainer, method, data, last, resume, out)
    trainer.save_checkpoint(last, weights_only=False)  # full state: optimizer, loops, callbacks
    skipped = _gather_skipped(data)
    invalid = _gather_invalid(data)
    if trainer.is_global_zero:
        from vidssl.models import save_encoder

        m = cfg.method
        save_encoder(method.encoder, out / "encoder.safetensors", name=m.backbone, kwargs=dict(m.backbone_kwargs),
                     contract=method.input_contract())
        if getattr(method, "_nonfinite_steps", 0):
            log(f"skipped {method._nonfinite_steps} steps whose loss was not finite "
                f"(trainer.max_nonfinite_steps={cfg.trainer.max_nonfinite_steps}; see train/nonfinite_steps)")
        if invalid:
            write_json_atomic(invalid, out / "invalid_views.json")
            for view, entry in invalid.items():
                log(f"view '{view}': {entry['invalid']} of {entry['clips']} clips from {len(entry['videos'])} videos had "
                    f"no real data (audio missing, undecodable or cut short) and were masked out, not fed as silence "
                    f"(listed in {out / 'invalid_views.json'})")
        if skipped:
            write_json_atomic(skipped, out / "skipped_videos.json")
            log(f"skipped {len(skipped)} unreadable videos (listed in {out / 'skipped_videos.json'}): "
                + ", ".join(sorted(skipped)[:10]))
        speed = throughput.summary()
        if speed:
            log(f"data wait {100 * speed['data_wait_fraction']:.0f}% of step time, {speed['samples_per_s']:.1f} samples/s "
                f"on this process (after the first step; per step: throughput/* in metrics.csv and TensorBoard)")
        log(f"pretraining done: {out} (step {trainer.global_step}); encoder at {out / 'encoder.safetensors'}")
    return out
