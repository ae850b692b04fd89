"""Captions as model input: words, a vocabulary, GDT's word-vector files, and a plan that adds the
tokens of each clip's caption to the item.

Captions live in the manifest: ``record.annotations["captions"]`` is a list of
``{"start": s, "end": s, "text": str}`` (seconds). A dataset gives them with a ``captions.json`` at its
root, ``{"relative/video.mp4": [{"start", "end", "text"}, ...] | "one caption for the whole video"}``,
read by :func:`attach_captions` whenever a manifest is built or loaded (the embedded dataset writes one).

GDT's video–text model (reference B8, ``HT100MDataset.py``) splits a caption into words with
``[\\w']+``, maps them to tokens with ``dict.npy`` (token = position + 1; 0 pads), keeps at most 20 words
and embeds them with the frozen 300-d ``word2vec.pth``. vidssl lower-cases the words first (the
dictionary is lower case); :func:`load_word_vectors` reads the two official files without executing
pickled code; without them the method learns an embedding over the corpus vocabulary
(:func:`corpus_vocabulary`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidssl.data.sampling import ClipPlan, SpanSelection, ViewsPlan
from vidssl.errors import DataError, UserError

CAPTIONS_FILE = "captions.json"
_WORD = re.compile(r"[\w']+")

__all__ = ["CAPTIONS_FILE", "split_words", "Vocabulary", "corpus_vocabulary", "attach_captions", "load_word_vectors",
           "CaptionedPlan", "caption_at"]


def split_words(sentence: str) -> list[str]:
    """GDT's ``_split_text`` (``[\\w']+``), lower-cased."""
    return _WORD.findall(str(sentence).lower())


@dataclass
class Vocabulary:
    """Words → tokens (1-based; 0 pads). Unknown words are dropped, as in GDT."""

    words: list[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.index = {w: i + 1 for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words) + 1  # with the padding token

    def tokens(self, sentence: str, max_words: int = 20) -> np.ndarray:
        """int64 ``max_words``: the known words' tokens in order, zero-padded (GDT ``_words_to_token``)."""
        ids = [self.index[w] for w in split_words(sentence) if w in self.index][:max_words]
        return np.asarray(ids + [0] * (max_words - len(ids)), dtype=np.int64)


def corpus_vocabulary(manifest) -> list[str]:
    """Every word of every caption of ``manifest``, sorted (deterministic for a given corpus)."""
    words = {w for r in manifest.records for c in (r.annotations or {}).get("captions", []) for w in split_words(c["text"])}
    return sorted(words)


def attach_captions(manifest) -> None:
    """Put ``ROOT/captions.json`` (when there is one) into the records' ``annotations["captions"]``, in place."""
    path = Path(manifest.root) / CAPTIONS_FILE
    if not path.is_file():
        return
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); it must map video paths to captions") from None
    if not isinstance(table, dict):
        raise DataError(f"{path} must map video paths (relative to {manifest.root}) to captions")
    for record in manifest.records:
        entry = table.get(record.path)
        if entry is None:
            continue
        if isinstance(entry, str):
            seconds = record.info.duration if record.info is not None else float("inf")
            entry = [{"start": 0.0, "end": seconds, "text": entry}]
        record.annotations = {**(record.annotations or {}), "captions": entry}


def caption_at(captions: list[dict[str, Any]], start: float, end: float) -> str | None:
    """The caption that overlaps ``[start, end)`` the most (the nearest one when none overlaps); None if none."""
    if not captions:
        return None

    def score(c) -> tuple[float, float]:
        overlap = min(end, float(c["end"])) - max(start, float(c["start"]))
        gap = max(float(c["start"]) - end, start - float(c["end"]), 0.0)
        return (overlap, -gap)

    return str(max(captions, key=score)["text"])


@dataclass
class CaptionedPlan(ClipPlan):
    """A :class:`ViewsPlan` whose items also carry, for each anchor video view ``clip_p``, the tokens of
    the caption over that clip (extras ``tokens_p`` int64 ``max_words`` and ``text_valid_p`` bool: False
    when the record has no caption; its tokens are then all padding)."""

    plan: ViewsPlan
    vocabulary: Vocabulary
    anchors: list[str]
    max_words: int = 20

    @property
    def views(self):
        return self.plan.views

    def item_keys(self, record):
        return self.plan.item_keys(record)

    def synthetic_extras(self, batch_size: int, generator) -> dict[str, Any]:
        """Random extras shaped like a collated batch's (``vidssl.data.synthetic``)."""
        import torch

        out = {}
        for anchor in self.anchors:
            out[f"tokens_{anchor}"] = torch.randint(1, max(2, len(self.vocabulary)), (batch_size, self.max_words),
                                                    generator=generator)
            out[f"text_valid_{anchor}"] = torch.ones(batch_size, dtype=torch.bool)
        return out

    def sample(self, record, rng, key=None) -> SpanSelection:
        selection = self.plan.sample(record, rng, key)
        info = getattr(record, "info", record)
        fps, frames = float(info.fps), int(info.num_frames)
        captions = (getattr(record, "annotations", None) or {}).get("captions") or []
        for anchor in self.anchors:
            view = selection.views[f"clip_{anchor}"]
            first = (selection.start_frame + int(np.min(view.frame_indices))) % frames
            last = (selection.start_frame + int(np.max(view.frame_indices))) % frames
            text = caption_at(captions, first / fps, (max(last, first) + 1) / fps)
            tokens = self.vocabulary.tokens(text, self.max_words) if text is not None else np.zeros(self.max_words, np.int64)
            selection.extras[f"tokens_{anchor}"] = tokens
            selection.extras[f"text_valid_{anchor}"] = np.asarray(bool(text is not None and tokens.any()))
        return selection


def _read_word_list(path: Path) -> list[str]:
    """``dict.npy``: a 1-d array of words, as a unicode array or (older numpy) an object array of str,
    read without executing pickled code."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError:  # an object array: unpickle with numpy globals only
        from numpy.lib import format as npy_format

        from vidssl.models.convert_brave import _RestrictedUnpickler

        with path.open("rb") as fh:
            version = npy_format.read_magic(fh)
            header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            header(fh)
            try:
                array = np.asarray(_RestrictedUnpickler(fh, encoding="latin1").load())
            except Exception as exc:  # noqa: BLE001 - any failure of the restricted unpickler is the user's file
                raise UserError(f"cannot read the word list {path} safely: {exc}") from None
    if array.ndim != 1 or not all(isinstance(w, str) for w in array.tolist()):
        raise UserError(f"{path} must be a 1-d array of words, got {array.dtype} of shape {array.shape}")
    return [str(w) for w in array.tolist()]


def load_word_vectors(word2vec_path: str | os.PathLike, dict_path: str | os.PathLike):
    """GDT's official word vectors: ``(Vocabulary, vectors)`` with ``vectors`` float32 ``(V + 1)×300``.

    ``dict.npy`` lists the words (token = position + 1); ``word2vec.pth`` is a ``torch.save``d tensor
    whose row k is token k's vector (row 0: padding), read with ``weights_only=True``. A table with one
    row per word (no padding row) gets a zero row prepended.
    """
    import torch

    word2vec_path, dict_path = Path(word2vec_path), Path(dict_path)
    for path in (word2vec_path, dict_path):
        if not path.is_file():
            raise UserError(f"word-vector file {path} does not exist")
    words = _read_word_list(dict_path)
    try:
        vectors = torch.load(word2vec_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler refused or the file is broken
        raise UserError(f"cannot read {word2vec_path} safely (a tensor only): {str(exc).splitlines()[0]}") from None
    if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2:
        raise UserError(f"{word2vec_path} must hold a 2-d tensor of word vectors")
    if vectors.shape[0] == len(words):
        vectors = torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])
    if vectors.shape[0] != len(words) + 1:
        raise UserError(f"{word2vec_path} has {vectors.shape[0]} rows for the {len(words)} words of {dict_path}")
    return Vocabulary(words), vectors.float()
