"""The map-style dataset: manifest + plan -> dict items, each decoded once.

Item layout (see ``docs/interfaces.md``)::

    {"clips": {view: tensor},        # per kind: see vidssl.data.sampling
     "valid": {view: bool tensor},   # False: the view holds no real data (audio missing or cut short)
     "label": int64, "index": int64, # index of the record actually used
     "skipped": tuple of paths skipped to produce this item,
     **extras}                       # per-item arrays of the plan (e.g. a shot window's shot_labels)

With ``repeats = k`` an item is a list of k such dicts sampled from ONE decode of one video
(repeated augmentation, as VideoMAE/AVION do); :func:`collate` flattens them into the batch.

Workers only decode and resize (short side, then centre crop to the view's canvas); every view
is cut from the decoded span by the slicer of its kind (:data:`SLICERS`, a plain dict).
Augmentation happens batched on the device (``vidssl.data.transforms``).

Still images (a manifest of the ``images`` layout, ``manifest.stills``) are one-frame videos: they
are decoded by the ``image`` decoder (Pillow) whatever video backend is configured, and only
``image`` views may be cut from them (a video, audio or flow view of a still would be a frozen clip,
silence or zero motion: refused with a :class:`DataError`). Folders of frames (the ``movienet_keyframes``
layout: MovieNet's keyframes, ``manifest.frame_folders``) are likewise read by the ``frames`` decoder,
one image per frame at a nominal 1 fps, and give image views only.

Audio is never silently zero: an audio view whose file has no track, whose track decodes to
nothing, or whose span the track does not fully cover has ``valid[view] = False`` (its samples
are zeros); methods that need audio drop or mask those items.

Determinism: the random draws of item ``i`` in pass ``p`` come from
``numpy.random.default_rng((seed, p, i, attempt))``, independent of worker and rank. A sampler
asks for pass ``p`` by passing the index ``p · len(dataset) + i``
(:class:`vidssl.data.samplers.StreamSampler` does); plain indices use :meth:`set_epoch`'s pass.

Corrupt files: the item is replaced by another item drawn deterministically from the same
generator, the path is logged once per process, kept in :meth:`failures`, and travels with the
batch in ``batch["skipped"]`` so the main process can aggregate what every worker skipped
(:meth:`note_batch`). That is TRAINING behaviour. Evaluation must never substitute one video for
another, so it builds the dataset with ``on_unreadable="exclude"``: an unreadable item becomes a
marker ``{"unreadable": (path, reason), "index"}`` that :func:`collate` drops from the batch and
lists in ``batch["unreadable"]``; a clip that would repeat frames because a stream error cut the
decode short counts as unreadable too (in training those repeated frames are tolerated).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from vidssl.data.decode import get_decoder
from vidssl.data.slicers import SLICERS, SliceContext, _cover_short_side, crop_and_fit, fit_canvas
from vidssl.data.index import Manifest, VideoRecord
from vidssl.data.sampling import ClipPlan, SpanSelection
from vidssl.errors import DataError, VideoDecodeError

__all__ = ["VideoDataset", "collate", "worker_context", "fit_canvas", "crop_and_fit", "SLICERS", "SliceContext"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


class VideoDataset(Dataset):
    """Map-style dataset over a manifest and a plan.

    Args:
        manifest: from :func:`vidssl.data.index.build_manifest` / ``load_manifest``.
        plan: a :class:`~vidssl.data.sampling.ClipPlan`; its ``item_keys`` decide how many items
            a record gives (one per video, or one per shot for a shot window).
        split, fold: keep only ``manifest.subset(split, fold)`` (None: all records).
        decoder: backend name for :func:`~vidssl.data.decode.get_decoder`.
        seed: base seed of every random draw.
        repeats: k > 1 makes each item a list of k samples of one video, decoded once.
        max_retries: replacement items tried after a corrupt file before giving up.
        on_unreadable: ``"replace"`` (training: draw another item) or ``"exclude"`` (evaluation:
            return a marker item that :func:`collate` drops; see the module docstring).
        decoder_kwargs: passed to the decoder (e.g. ``thread_count``).

    Records whose probe failed in the manifest are left out up front (and listed by
    :meth:`failures`).
    """

    def __init__(
        self,
        manifest: Manifest,
        plan: ClipPlan,
        split: str | None = None,
        fold: int = 1,
        decoder: str = "pyav",
        seed: int = 0,
        repeats: int = 1,
        max_retries: int = 10,
        decoder_kwargs: dict | None = None,
        on_unreadable: str = "replace",
    ):
        if on_unreadable not in ("replace", "exclude"):
            raise ValueError(f"on_unreadable must be 'replace' or 'exclude', got {on_unreadable!r}")
        self.on_unreadable = on_unreadable
        source = manifest.subset(split, fold) if split is not None else manifest
        self.manifest = source
        self.records: list[VideoRecord] = [r for r in source.records if r.error is None]
        self._failures: dict[str, str] = {self.manifest.resolve(r): r.error for r in source.records if r.error is not None}
        what = f"{source.record_kind}s"
        if not self.records:
            raise DataError(f"no readable {what} in {manifest.root} (split={split}, fold={fold}); run `vidssl data check` on it")
        if source.media != "video":
            # still images and folders of keyframes (nominally 1 fps, with no audio) give image views only
            not_images = [f"{v.name} ({v.kind})" for v in plan.views if v.kind != "image"]
            if not_images:
                held = "still images" if source.stills else what
                raise DataError(f"{manifest.root} holds {held} (format={source.format}), but view(s) "
                                f"{', '.join(not_images)} need videos; point this stream's root at videos")
            decoder = source.media  # the "image" or "frames" decoder, whatever video backend is configured
        if repeats < 1:
            raise DataError(f"repeats must be >= 1, got {repeats}")
        self.plan = plan
        self.items: list[tuple[int, Any]] = [(i, key) for i, r in enumerate(self.records) for key in plan.item_keys(r)]
        if not self.items:
            raise DataError(f"the plan yields no items from the {len(self.records)} videos of {manifest.root}")
        self.decoder_name = decoder
        self.decoder_kwargs = dict(decoder_kwargs or {})
        self.decoder = get_decoder(decoder, **self.decoder_kwargs)
        self.seed = int(seed)
        self.repeats = int(repeats)
        self.max_retries = int(max_retries)
        self._flow_caches: dict[Any, Any] = {}
        # Shared memory so set_epoch reaches DataLoader workers (also persistent ones).
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._logged: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def labels(self) -> list[int]:
        return [self.records[i].label for i, _ in self.items]

    def set_epoch(self, epoch: int) -> None:
        """The pass whose draws plain indices (``< len(self)``) get."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def flow_cache(self, options):
        """The flow cache of ``options`` (one per method/resolution), under the dataset root."""
        key = (options.method, options.short_side)
        if key not in self._flow_caches:
            from vidssl.data.flow import FlowCache

            self._flow_caches[key] = FlowCache(self.manifest.root, method=options.method, short_side=options.short_side)
        return self._flow_caches[key]

    def failures(self) -> dict[str, str]:
        """Paths skipped so far in THIS process (and batches passed to :meth:`note_batch`) -> reason."""
        return dict(self._failures)

    def note_batch(self, batch: dict) -> None:
        """Record the paths a collated batch says its workers skipped (aggregates across workers)."""
        for path in batch.get("skipped", ()):
            self._failures.setdefault(path, "skipped by a DataLoader worker")

    def __getitem__(self, index: int) -> dict | list[dict]:
        index = int(index)
        epoch, index = divmod(index, len(self.items)) if index >= len(self.items) else (self.epoch, index)
        skipped: list[str] = []
        current = index
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng((self.seed, epoch, index, attempt))
            record_index, key = self.items[current]
            record = self.records[record_index]
            try:
                samples = self._load(record, key, rng)
            except VideoDecodeError as exc:
                self._skip(exc.path, exc.reason)
                if self.on_unreadable == "exclude":  # evaluation: never a replacement
                    return {"unreadable": (exc.path, exc.reason), "index": torch.tensor(record_index)}
                skipped.append(exc.path)
                current = int(rng.integers(len(self.items)))
                continue
            for sample in samples:
                sample["label"] = torch.tensor(record.label, dtype=torch.int64)
                sample["index"] = torch.tensor(record_index, dtype=torch.int64)
                sample["skipped"] = tuple(skipped)
                skipped = []  # reported once per item
            return samples[0] if self.repeats == 1 else samples
        raise DataError(f"{self.max_retries + 1} unreadable videos in a row (last: {skipped[-1]}); "
                        "run `vidssl data check` on the dataset")

    def _skip(self, path: str, reason: str) -> None:
        self._failures[path] = reason
        if path not in self._logged:
            self._logged.add(path)
            log.warning("%s unreadable %s %s: %s", "excluding" if self.on_unreadable == "exclude" else "skipping",
                        self.manifest.record_kind, path, reason)

    def _load(self, record: VideoRecord, key: Any, rng: np.random.Generator) -> list[dict]:
        path = self.manifest.resolve(record)
        if record.info is None:  # manifest built without probing
            from vidssl.data.index import probe_file

            record.info = probe_file(path, self.manifest.media)
        if self.manifest.frame_folders:
            from vidssl.data.decode import frame_files

            count = len(frame_files(path))  # listed once per worker and folder (cached on its mtime)
            if count != record.info.num_frames:  # frame i would silently be another image than when indexed
                raise DataError(f"{path} holds {count} images but held {record.info.num_frames} when it was indexed; "
                                f"re-index the dataset (`vidssl data index {self.manifest.root}`)")
        selections = [self.plan.sample(record, rng, key) for _ in range(self.repeats)]
        return self._slice(path, record.info, selections)

    def _decode_short_side(self, info, selections: list[SpanSelection]) -> int | None:
        """Decode at the largest scale any view needs (views that need less are resized again).

        Upscaling also happens here: swscale at decode time is far cheaper than a torch resize.
        """
        views = [v.spec for s in selections for v in s.views.values() if v.spec.decodes_frames]
        if any(v.canvas is None for v in views):
            return None
        short = max(v.crop.source_short_side if v.crop is not None else _cover_short_side(info.height, info.width, v.canvas)
                    for v in views)
        return short if short != min(info.height, info.width) else None

    def _decode_frames(self, path: str, info, selections: list[SpanSelection]) -> tuple[torch.Tensor, np.ndarray]:
        """Decode every source frame any video/image view of ``selections`` needs, once.

        Returns the frames (uint8 ``N×H×W×C``) and their sorted absolute source indices.
        """
        absolute = [s.start_frame + v.frame_indices.reshape(-1) for s in selections for v in s.views.values()
                    if v.spec.decodes_frames]
        wanted = np.unique(np.concatenate(absolute))
        short_side = self._decode_short_side(info, selections)
        # Decode once per run of nearby frames: usually one run, the whole covering span. Clips far
        # apart (e.g. clips at both ends of a long video, or the shots of a window) are decoded
        # separately, because seeking costs about one keyframe interval while decoding the gap
        # costs the whole gap.
        max_gap = (info.keyframe_interval or info.fps) + 8
        runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > max_gap) + 1)
        pieces = []
        for run in runs:
            first, last = int(run[0]), int(run[-1])
            clip = self.decoder.decode(path, first / info.fps, (last + 1) / info.fps, short_side=short_side,
                                       frame_indices=run - run[0])
            if self.on_unreadable == "exclude" and clip.truncated and len(np.unique(clip.frame_times)) < len(run):
                # a stream error cut the decode short and the decoder repeated its last frame
                raise VideoDecodeError(path, f"stream error: only {len(np.unique(clip.frame_times))} of the {len(run)} "
                                             f"frames wanted in [{first / info.fps:.2f}, {(last + 1) / info.fps:.2f}) s decode")
            pieces.append(clip.frames)
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)), wanted

    def _slice(self, path: str, info, selections: list[SpanSelection]) -> list[dict]:
        frames = wanted = None
        if any(v.spec.decodes_frames for s in selections for v in s.views.values()):
            frames, wanted = self._decode_frames(path, info, selections)
        samples = []
        for selection in selections:
            ctx = SliceContext(self, path, info, selection, frames,
                               None if wanted is None else wanted - selection.start_frame)
            clips, valid = {}, {}
            for name, view in selection.views.items():
                clips[name], is_valid = SLICERS[view.spec.kind](ctx, view)
                valid[name] = torch.tensor(is_valid)
            sample = {"clips": clips, "valid": valid}
            zoom = {name: torch.tensor(view.zoom, dtype=torch.float32) for name, view in selection.views.items()
                    if view.crop_box is not None}
            if zoom:  # output pixels per source pixel of each worker-cropped view (scales device-side blur)
                sample["zoom"] = zoom
            sample.update({k: torch.as_tensor(v) for k, v in selection.extras.items()})
            samples.append(sample)
        return samples


def worker_context(num_workers: int) -> str | None:
    """The multiprocessing start method of DataLoader workers: ``"forkserver"`` (``"spawn"`` where there is
    none) when there are workers. A worker *forked* from a process whose other threads hold a lock (torch's
    or OpenCV's thread pools, logging) can hang for ever — seen in the test suite; the fork server forks
    from a clean single-threaded process. Pass it as ``DataLoader(multiprocessing_context=...)``."""
    if num_workers <= 0:
        return None
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def collate(items: list[dict | list[dict]]) -> dict:
    """``default_collate`` for tensors; repeated samples (lists) are flattened into the batch and
    the ``skipped`` paths of every item are concatenated into one list.

    Marker items of an ``on_unreadable="exclude"`` dataset are left out of the batch and listed in
    ``batch["unreadable"]`` as ``(record index, path, reason)``; a batch of markers only has no
    ``"clips"`` (its consumers skip it).
    """
    flat = [sample for item in items for sample in (item if isinstance(item, list) else [item])]
    unreadable = [(int(s["index"]), *s["unreadable"]) for s in flat if "unreadable" in s]
    flat = [s for s in flat if "unreadable" not in s]
    skipped = [p for sample in flat for p in sample.get("skipped", ())]
    batch = default_collate([{k: v for k, v in sample.items() if k != "skipped"} for sample in flat]) if flat else {}
    batch["skipped"] = skipped
    if unreadable:
        batch["unreadable"] = unreadable
    return batch
