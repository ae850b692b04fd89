"""The DataModule over a method's data streams: one loader per stream, combined per step.

A method declares its streams (``SSLMethod.data_streams() -> {name: DataStream}``): one for
most methods, a video and an image stream for BEVT. :class:`StreamDataModule` builds each
stream's dataset and loader and, with several streams, combines them with Lightning's
``CombinedLoader``. Every training batch is ``{stream name: stream batch}`` whatever the number
of streams, each stream batch laid out as :func:`vidssl.data.datasets.collate` makes it.

The first stream is the *primary* one: one pass over it is one epoch. The others cycle over
their own data independently. Every stream's sampler is positioned by the optimiser step
(:class:`vidssl.data.samplers.StreamSampler`), so a run killed and resumed at step N reads
exactly the batches an uninterrupted run reads from step N on, in every stream.

Views that hold no real data (``valid[view] = False``: audio missing, undecodable or cut short)
are counted per view on the CPU before each batch moves to the device (:meth:`StreamDataModule.
invalid_views`); :class:`InvalidViewLogger` logs the running count as ``data/invalid/<view>`` and
the run ends with a summary naming the videos (``invalid_views.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch

from vidssl.data.sampling import ClipPlan
from vidssl.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["DataStream", "StreamDataModule", "prepare_data_root", "open_manifest"]


@dataclass
class DataStream:
    """One stream of training data: what to read (``data``: a :class:`~vidssl.methods.config.DataConfig`)
    and how each item is cut from it (``plan``)."""

    plan: ClipPlan
    data: Any


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loader_workers(requested: int, local_processes: int = 1, log: Callable[[str], None] | None = None) -> int:
    """DataLoader workers for one process: ``requested``, or with -1 the process's share of the cores.

    Each worker decodes with one thread, so more workers than cores only adds switching: when the
    node's processes ask for more workers in all than twice its cores, ``log`` says so (the value
    is kept; a user may know better, e.g. workers that mostly wait on a network file system).
    """
    cores = available_cores()
    share = max(1, cores // max(1, local_processes))
    if requested == -1:
        return share
    if log is not None and requested * local_processes > 2 * cores:
        log(f"data.num_workers={requested} per process x {local_processes} process(es) = "
            f"{requested * local_processes} decode workers on {cores} cores: oversubscribed, each worker decodes "
            f"with one thread; data.num_workers=-1 uses {share} per process")
    return requested


def prepare_data_root(data: Any, log: Callable[[str], None] = print, key: str = "data") -> Path:
    """The stream's data root; the embedded dataset is generated there first when the config asks for it.
    ``key``: where ``data`` sits in the config (``data``, or ``streams.<name>`` of a secondary stream), for
    the message when the root is missing.

    The demo dataset is drawn with ``data.demo_seed``, never with the training seed: a second
    training seed must not silently regenerate (and replace) the data.
    """
    root = Path(data.root).expanduser()
    if not root.exists():
        if not data.generate_demo:
            raise DataError(f"data root '{root}' does not exist; set {key}.root=PATH (or generate the demo: "
                            f"`vidssl data demo --out {root}`)")
        from vidssl.data.demo import generate_embedded

        variant = getattr(data, "demo_variant", "clips")
        log(f"data root {root} does not exist: generating the embedded demo dataset there "
            f"({variant}, size={data.demo_size}, seed={data.demo_seed}) ...")
        generate_embedded(variant, root, size=data.demo_size, seed=data.demo_seed)
        log(f"wrote the demo dataset to {root}")
    return root


def open_manifest(root: Path, fmt: str = "auto"):
    """The manifest of ``root``: its saved ``vidssl_manifest.json`` if there is one, else built now.

    A saved manifest of another layout than an explicit ``fmt`` (e.g. ``format=images`` asked of a root
    indexed as ``folder``) is a :class:`DataError`: reading it would silently ignore the setting. The two
    readings of a MovieNet tree (``movienet``: its movies, ``movienet_keyframes``: its keyframes) are
    both valid, so the one asked for is built in memory instead (the saved manifest is kept).
    """
    from vidssl.data.index import MANIFEST_NAME, build_manifest, load_manifest

    if (root / MANIFEST_NAME).is_file():
        manifest = load_manifest(root)
        if {fmt, manifest.format} == {"movienet", "movienet_keyframes"}:
            # two readings of one MovieNet tree (its movies, its keyframes): both are right, e.g. a tiny preset
            # decoding the movies and a full preset reading the keyframes of one `vidssl data shots` output
            log.info("%s is indexed as format=%s; reading it as format=%s (in memory, the "
                                             "saved manifest is kept)", root, manifest.format, fmt)
            return build_manifest(root, format=fmt, write=False)
        if fmt != "auto" and manifest.format and manifest.format != fmt:
            raise DataError(f"{root / MANIFEST_NAME} indexes {root} as format={manifest.format}, but format={fmt} was "
                            f"asked; re-index it (`vidssl data index {root} --format {fmt}`) or set format=auto")
        return manifest
    return build_manifest(root, format=fmt)


class StreamDataModule(L.LightningDataModule):
    """Loaders of every stream of a run.

    Args:
        streams: ``{name: DataStream}``; the first is the primary stream (it defines the epoch).
        seed: seed of the shuffles and of every random draw in the datasets.
        manifests: manifests already opened, by stream name (the others are opened in ``setup``).
        log: where messages go (dataset generation).
    """

    def __init__(self, streams: dict[str, DataStream], seed: int = 0, manifests: dict[str, Any] | None = None,
                 log: Callable[[str], None] = print) -> None:
        super().__init__()
        if not streams:
            raise ConfigError("a method must declare at least one data stream")
        names = [v.name for s in streams.values() for v in s.plan.views]
        if len(set(names)) != len(names):
            raise ConfigError(f"view names must be unique across the streams, got {names}")
        self.streams = dict(streams)
        self.seed = int(seed)
        self.manifests: dict[str, Any] = dict(manifests or {})
        self.datasets: dict[str, Any] = {}
        self.log = log
        self._resume_position = 0
        self._saved_items: dict[str, int] = {}
        self._validity: dict[str, dict[str, Any]] = {}  # view -> clips, invalid, stream, record indices

    @property
    def primary(self) -> str:
        return next(iter(self.streams))

    def setup(self, stage: str | None = None) -> None:
        for name, stream in self.streams.items():
            if name not in self.manifests:
                # the primary stream reads ``data``, every other one ``streams.<name>`` (PretrainConfig.stream_data)
                key = "data" if name == self.primary else f"streams.{name}"
                self.manifests[name] = open_manifest(prepare_data_root(stream.data, self.log, key), stream.data.format)

    def _position(self) -> int:
        """Batches every stream has delivered so far: ``accumulate_grad_batches`` per optimiser step. A
        resumed run first iterates its loaders before Lightning restores the step, hence the saved position."""
        return max(self._steps_in_batches(), self._resume_position)

    def _steps_in_batches(self) -> int:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.global_step) * int(getattr(trainer, "accumulate_grad_batches", 1) or 1)

    def _local_world(self) -> int:
        """Training processes on this node (they share its cores)."""
        trainer = getattr(self, "trainer", None)
        devices = getattr(trainer, "num_devices", 1) if trainer is not None else 1
        return max(1, int(devices or 1))

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def make_dataset(self, name: str):
        from vidssl.data.datasets import VideoDataset

        stream = self.streams[name]
        data = stream.data
        split = None if data.split == "all" else data.split
        return VideoDataset(self.manifests[name], stream.plan, split=split, fold=data.fold, seed=self.seed,
                            decoder=data.decoder, repeats=data.repeats)

    def loader(self, name: str) -> torch.utils.data.DataLoader:
        """The DataLoader of stream ``name`` on this process."""
        from vidssl.data.datasets import collate, worker_context
        from vidssl.data.samplers import StreamSampler

        data = self.streams[name].data
        world, rank = self._world()
        if data.batch_size % world:
            raise ConfigError(f"batch_size={data.batch_size} of stream '{name}' is not divisible by the {world} processes")
        per_rank = data.batch_size // world
        dataset = self.datasets[name] = self.make_dataset(name)
        saved = self._saved_items.get(name)
        if saved is not None and saved != len(dataset):
            raise DataError(f"stream '{name}' now has {len(dataset)} items but the checkpoint was trained on {saved}: "
                            "a resumed run must read the same data (check data.root / split / fold)")
        sampler = StreamSampler(len(dataset), per_rank, seed=self.seed, rank=rank, world_size=world,
                                position=self._position, cycle=name != self.primary)
        workers = loader_workers(data.num_workers, self._local_world(), self.log if name == self.primary else None)
        return torch.utils.data.DataLoader(
            dataset, batch_size=per_rank, sampler=sampler, num_workers=workers, drop_last=True, collate_fn=collate,
            pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
            prefetch_factor=data.prefetch_factor if workers > 0 else None,
            multiprocessing_context=worker_context(workers),
            # own generator: creating an iterator must not consume the global RNG (exact resume)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self):
        from lightning.pytorch.utilities import CombinedLoader

        # "min_size": the secondary streams never end, so the primary stream's pass is the epoch.
        return CombinedLoader({name: self.loader(name) for name in self.streams}, mode="min_size")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.note_validity(batch)
        return batch

    def note_validity(self, batch: dict[str, Any]) -> None:
        """Count this batch's clips per view and those marked invalid (still on the CPU: no device sync)."""
        for name, stream_batch in batch.items():
            valid = stream_batch.get("valid") if isinstance(stream_batch, dict) else None
            if not isinstance(valid, dict):
                continue
            index = stream_batch.get("index")
            for view, flags in valid.items():
                flags = torch.as_tensor(flags).reshape(-1).bool()
                entry = self._validity.setdefault(view, {"stream": name, "clips": 0, "invalid": 0, "records": set()})
                entry["clips"] += int(flags.numel())
                bad = (~flags).nonzero().reshape(-1)
                entry["invalid"] += int(bad.numel())
                if bad.numel() and index is not None:
                    entry["records"].update(torch.as_tensor(index).reshape(-1)[bad].tolist())

    def invalid_views(self) -> dict[str, dict[str, Any]]:
        """``{view: {"clips", "invalid", "videos": [paths]}}`` of this process (since this process started:
        a resumed run counts from the resume on)."""
        out = {}
        for view, entry in self._validity.items():
            dataset = self.datasets.get(entry["stream"])
            videos = sorted({dataset.manifest.resolve(dataset.records[i]) for i in entry["records"]} if dataset else [])
            out[view] = {"clips": entry["clips"], "invalid": entry["invalid"], "videos": videos}
        return out

    def validity_counts(self) -> dict[str, tuple[int, int]]:
        """``{view: (invalid, clips)}`` so far on this process (every view seen)."""
        return {view: (entry["invalid"], entry["clips"]) for view, entry in self._validity.items()}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.note_batch(batch)
        return batch

    def note_batch(self, batch: dict[str, Any]) -> None:
        """Record the unreadable videos the workers skipped for this batch (every stream)."""
        for name, stream_batch in batch.items():
            if name in self.datasets and isinstance(stream_batch, dict) and stream_batch.get("skipped"):
                self.datasets[name].note_batch(stream_batch)

    def skipped_videos(self) -> dict[str, str]:
        """Unreadable videos this process's streams skipped so far (path -> reason)."""
        out: dict[str, str] = {}
        for dataset in self.datasets.values():
            out.update(dataset.failures())
        return out

    def state_dict(self) -> dict[str, Any]:
        # The position (batches delivered = optimiser steps) and each stream's size, so a resumed
        # run starts where this one stopped and can check that it reads the same data.
        return {"position": self._steps_in_batches(), "items": {name: len(d) for name, d in self.datasets.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_position = int(state.get("position", 0))
        self._saved_items = dict(state.get("items", {}))


class InvalidViewLogger(L.Callback):
    """Logs ``data/invalid/<view>``: the running count of clips of ``view`` marked invalid (audio with no
    track, undecodable or cut short), for the views of kind audio and any view that had one."""

    def __init__(self, always: tuple[str, ...] = ()):
        self.always = tuple(always)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        data = trainer.datamodule
        if not isinstance(data, StreamDataModule):
            return
        for view, (invalid, clips) in data.validity_counts().items():
            if invalid or view in self.always:
                pl_module.log(f"data/invalid/{view}", float(invalid), on_step=True, batch_size=1)
