"""The map-style video dataset: manifest + clip plan -> dict items, decoded once per item.

Item layout (see ``docs/interfaces.md``)::

    {"video": {view: uint8 T×H×W×C  (K×T×H×W×C for multi-clip plans)},
     "audio": {view: float32 N      (K×N)},      # only views with audio_seconds > 0
     "has_audio": bool tensor,                   # False: the file has no audio (audio views are zeros)
     "label": int64, "index": int64,             # index of the record actually used
     "skipped": tuple of paths skipped to produce this item}

Workers only decode and resize (short side, then centre crop to the view's canvas);
augmentation happens batched on the device (``vidssl.data.transforms``).

Determinism: the random draws of item ``i`` come from ``numpy.random.default_rng((seed,
epoch, i, attempt))``, so they depend on neither the worker nor the rank; use
:meth:`VideoDataset.set_epoch` each epoch (it writes a shared-memory counter, so it also
reaches persistent DataLoader workers).

Corrupt files: the item is replaced by another record drawn deterministically from the same
generator, the path is logged once per process (``logging`` warning), kept in the process's
:meth:`failures`, and travels with the batch in ``batch["skipped"]`` (:func:`collate` joins
the lists), so the main process can aggregate what every worker skipped by passing each
batch to :meth:`VideoDataset.note_batch` (the training loop does).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from vidssl.data.decode import get_decoder, resized_size
from vidssl.data.index import Manifest, VideoRecord
from vidssl.data.sampling import ClipPlan, SpanSelection
from vidssl.errors import DataError, VideoDecodeError

__all__ = ["VideoDataset", "collate", "fit_canvas"]

log = logging.getLogger(__name__)


def _cover_short_side(height: int, width: int, canvas: tuple[int, int]) -> int:
    """Smallest short side for which an (height, width) frame covers ``canvas`` after resizing."""
    scale = max(canvas[0] / height, canvas[1] / width)
    return max(1, math.ceil(min(height, width) * scale - 1e-6))


def fit_canvas(frames: torch.Tensor, canvas: tuple[int, int] | None) -> torch.Tensor:
    """Resize (short side, aspect kept) and centre-crop uint8 ``...×H×W×C`` frames to ``canvas`` (H, W)."""
    if canvas is None:
        return frames
    h, w = frames.shape[-3], frames.shape[-2]
    short = _cover_short_side(h, w, canvas)
    nh, nw = resized_size(h, w, short)
    nh, nw = max(nh, canvas[0]), max(nw, canvas[1])
    if (nh, nw) != (h, w):
        lead = frames.shape[:-3]
        x = frames.reshape(-1, h, w, frames.shape[-1]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, nh, nw, -1)
    top, left = (nh - canvas[0]) // 2, (nw - canvas[1]) // 2
    return frames[..., top : top + canvas[0], left : left + canvas[1], :].contiguous()


class VideoDataset(Dataset):
    """Map-style dataset over a manifest and a clip plan.

    Args:
        manifest: from :func:`vidssl.data.index.build_manifest` / ``load_manifest``.
        plan: a :class:`~vidssl.data.sampling.ClipPlan`.
        split, fold: keep only ``manifest.subset(split, fold)`` (None: all records).
        decoder: backend name for :func:`~vidssl.data.decode.get_decoder`.
        seed: base seed of every random draw.
        max_retries: replacement items tried after a corrupt file before giving up.
        audio_rate: sample rate of the audio views (Hz).
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
        max_retries: int = 10,
        audio_rate: int = 16000,
        decoder_kwargs: dict | None = None,
    ):
        source = manifest.subset(split, fold) if split is not None else manifest
        self.manifest = source
        self.records: list[VideoRecord] = [r for r in source.records if r.error is None]
        self._failures: dict[str, str] = {self.manifest.resolve(r): r.error for r in source.records if r.error is not None}
        if not self.records:
            raise DataError(f"no readable videos in {manifest.root} (split={split}, fold={fold}); run `vidssl data check` on it")
        self.plan = plan
        self.decoder_name = decoder
        self.decoder_kwargs = dict(decoder_kwargs or {})
        self.decoder = get_decoder(decoder, **self.decoder_kwargs)
        self.seed = int(seed)
        self.max_retries = int(max_retries)
        self.audio_rate = int(audio_rate)
        # Shared memory so set_epoch reaches DataLoader workers (also persistent ones).
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._logged: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws for a new epoch (call it as you call DistributedSampler.set_epoch)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def failures(self) -> dict[str, str]:
        """Paths skipped so far in THIS process (and batches passed to :meth:`note_batch`) -> reason."""
        return dict(self._failures)

    def note_batch(self, batch: dict) -> None:
        """Record the paths a collated batch says its workers skipped (aggregates across workers)."""
        for path in batch.get("skipped", ()):
            self._failures.setdefault(path, "skipped by a DataLoader worker")

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        skipped: list[str] = []
        current = index
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng((self.seed, self.epoch, index, attempt))
            record = self.records[current]
            try:
                item = self._load(record, rng)
            except VideoDecodeError as exc:
                self._skip(exc.path, exc.reason)
                skipped.append(exc.path)
                current = int(rng.integers(len(self.records)))
                continue
            item["label"] = torch.tensor(record.label, dtype=torch.int64)
            item["index"] = torch.tensor(current, dtype=torch.int64)
            item["skipped"] = tuple(skipped)
            return item
        raise DataError(f"{self.max_retries + 1} unreadable videos in a row (last: {skipped[-1]}); "
                        "run `vidssl data check` on the dataset")

    def _skip(self, path: str, reason: str) -> None:
        self._failures[path] = reason
        if path not in self._logged:
            self._logged.add(path)
            log.warning("skipping unreadable video %s: %s", path, reason)

    def _load(self, record: VideoRecord, rng: np.random.Generator) -> dict:
        path = self.manifest.resolve(record)
        info = record.info
        if info is None:  # manifest built without probing
            from vidssl.data.decode import probe

            info = record.info = probe(path)
        selection = self.plan.sample(info.num_frames, info.fps, rng)
        return self._slice(path, info, selection)

    def _decode_short_side(self, info, selection: SpanSelection) -> int | None:
        """Decode at the largest scale any view needs (views that need less are resized again).

        Upscaling also happens here: swscale at decode time is far cheaper than a torch resize.
        """
        canvases = [v.spec.canvas for v in selection.views.values()]
        if any(c is None for c in canvases):
            return None
        short = max(_cover_short_side(info.height, info.width, c) for c in canvases)
        return short if short != min(info.height, info.width) else None

    def _slice(self, path: str, info, selection: SpanSelection) -> dict:
        fps = info.fps
        wanted = np.unique(np.concatenate([v.frame_indices.reshape(-1) for v in selection.views.values()]))
        short_side = self._decode_short_side(info, selection)
        # Decode once per run of nearby frames: usually one run, the whole covering span. Clips far
        # apart (e.g. rho clips at both ends of a long video) are decoded separately, because
        # seeking costs about one keyframe interval while decoding the gap costs the whole gap.
        max_gap = (info.keyframe_interval or fps) + 8
        runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > max_gap) + 1)
        pieces = []
        for run in runs:
            first, last = selection.start_frame + int(run[0]), selection.start_frame + int(run[-1])
            clip = self.decoder.decode(path, first / fps, (last + 1) / fps, short_side=short_side,
                                       frame_indices=run - run[0])
            pieces.append(clip.frames)
        frames = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        span_audio = None
        need_audio = any(v.spec.audio_seconds > 0 for v in selection.views.values())
        if info.has_audio and need_audio:
            span_audio, _ = self.decoder.decode_audio(path, selection.start_frame / fps, selection.end_frame / fps,
                                                      self.audio_rate)
        video, audio = {}, {}
        for name, view in selection.views.items():
            positions = torch.from_numpy(np.searchsorted(wanted, view.frame_indices))
            video[name] = fit_canvas(frames[positions], view.spec.canvas)  # T×H×W×C or K×T×H×W×C
            if view.spec.audio_seconds > 0:
                audio[name] = self._audio(span_audio, view, selection, info)
        has_audio = span_audio is not None if need_audio else bool(info.has_audio)
        return {"video": video, "audio": audio, "has_audio": torch.tensor(has_audio)}

    def _audio(self, span_audio, view, selection: SpanSelection, info) -> torch.Tensor:
        """The view's audio (``N`` or ``K×N``) cut from the span's audio; zeros when the file has none."""
        rate = self.audio_rate
        count = int(round(view.spec.audio_seconds * rate))
        starts = np.atleast_1d(view.audio_starts)
        if span_audio is None:
            out = torch.zeros(len(starts), count)
        else:
            first = np.round(starts * rate).astype(np.int64)[:, None] + np.arange(count)[None, :]
            n = span_audio.numel()
            if selection.looped:
                # Loop the audio like the frames: wrap over the audio of the whole video.
                period = max(1, min(n, int(round(selection.num_frames / info.fps * rate))))
                idx = torch.from_numpy(first % period)
                out = span_audio[idx]
            else:
                idx = torch.from_numpy(np.clip(first, 0, max(n - 1, 0)))
                out = span_audio[idx] if n else torch.zeros(len(starts), count)
                out[torch.from_numpy(first >= n)] = 0.0
        if view.spec.reverse:
            out = out.flip(-1)
        return out[0] if np.ndim(view.audio_starts) == 0 else out


def collate(items: list[dict]) -> dict:
    """``default_collate`` for tensors; ``skipped`` paths are concatenated into one list."""
    skipped = [p for item in items for p in item.get("skipped", ())]
    batch = default_collate([{k: v for k, v in item.items() if k != "skipped"} for item in items])
    batch["skipped"] = skipped
    return batch
