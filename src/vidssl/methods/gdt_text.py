"""Video–text GDT (reference B8: ``TextVid_GDT``, ``HT100MDataset.py``, ``scripts/pretrain_gdt_ht100m.sh``).

GDT with the audio replaced by the caption over each clip: the same clips (τ1, τ2), hypotheses, NCE
and optimiser as :mod:`vidssl.methods.gdt`; the second modality is the text of the record's caption
that overlaps the clip most (``annotations["captions"]``, e.g. ``ROOT/captions.json``;
:class:`~vidssl.data.text.CaptionedPlan`), at most 20 words, encoded by GDT's text encoder
(:class:`~vidssl.models.text.GDTTextEncoder`: word vectors → Linear 300→2048 → ReLU → max over words)
and ``mlp_t`` (2048 → 512 → 256). Text reversal = reversed word order.

Word vectors: the official ``word2vec.pth`` + ``dict.npy`` (``method.word2vec_path`` /
``method.dict_path``; frozen), or, without them, a trainable 300-d embedding over the corpus
vocabulary (every caption word of the training manifest, kept in ``method.vocabulary`` so a checkpoint
rebuilds the same table). Nothing is downloaded.

Video (B8): a random square crop of the whole short side, resized to 112, no flip, no colour jitter,
pixels in [0, 1] without mean/std normalisation; 30 frames at 16 fps.

Departures: words are lower-cased before the dictionary look-up; a clip whose record has no caption
(or no known word) is left out of the loss (``text_valid``), as missing audio is. HowTo100M's loader
draws a caption first and a clip inside it (widened to ≥ 4 s); vidssl draws the clip and takes its
caption, so one plan serves every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from vidssl.errors import ConfigError
from vidssl.methods.gdt import GDT, GDTConfig


@dataclass
class GDTTextConfig(GDTConfig):
    """Video–text GDT; defaults = ``scripts/pretrain_gdt_ht100m.sh`` (30 frames at 16 fps, 112² crops)."""

    name: str = "gdt_text"
    target_fps: float | None = 16.0
    short_side: tuple[float, float] = (112.0, 112.0)
    flip_p: float = 0.0
    color_jitter: float = 0.0
    word2vec_path: str = ""
    dict_path: str = ""
    vocabulary: list[str] = field(default_factory=list)
    word_dim: int = 300
    text_dim: int = 2048
    max_words: int = 20

    def __post_init__(self):
        super().__post_init__()
        if bool(self.word2vec_path) != bool(self.dict_path):
            raise ConfigError("method.word2vec_path and method.dict_path go together (GDT's word2vec.pth and dict.npy)")
        if self.max_words < 1:
            raise ConfigError(f"method.max_words must be >= 1, got {self.max_words}")


class GDTText(GDT):
    """Video–text GDT (see the module docstring). Views ``video_{t}`` and ``text_{t}`` (tokens)."""

    Config = GDTTextConfig
    other = "text"
    input_mean = 0.0  # B8: /255 only
    input_std = 1.0

    def build_other(self) -> int:
        from vidssl.data.text import Vocabulary, load_word_vectors
        from vidssl.models.text import GDTTextEncoder

        m = self.cfg.method
        vectors = None
        if m.word2vec_path:
            self.vocabulary, vectors = load_word_vectors(m.word2vec_path, m.dict_path)
        else:
            if not m.vocabulary:
                m.vocabulary = self._corpus_vocabulary()
            self.vocabulary = Vocabulary(list(m.vocabulary))
        self.text_encoder = GDTTextEncoder(len(self.vocabulary), m.word_dim, m.text_dim, vectors)
        return m.text_dim

    def _corpus_vocabulary(self) -> list[str]:
        from vidssl.data.module import open_manifest
        from vidssl.data.text import corpus_vocabulary

        root = Path(self.cfg.data.root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"video-text GDT learns its word embedding over the training captions, but data.root "
                              f"'{root}' does not exist; set method.word2vec_path and method.dict_path, or "
                              f"method.vocabulary")
        words = corpus_vocabulary(open_manifest(root, self.cfg.data.format))
        if not words:
            raise ConfigError(f"no captions in {root} (annotations['captions'], e.g. from {root}/captions.json); "
                              "video-text GDT needs a caption per video (an embedded dataset written before it had "
                              f"captions gets them from `vidssl data demo --out {root}`)")
        return words

    def other_views(self, position: str) -> list:
        return []  # the text comes with the item (CaptionedPlan's extras), not from the decode

    def make_plan(self):
        from vidssl.data.text import CaptionedPlan

        return CaptionedPlan(super().make_plan(), self.vocabulary, self.positions, self.cfg.method.max_words)

    def other_augment(self, batch: dict, position: str) -> Tensor:
        return batch[f"tokens_{position}"].long()

    def reverse_other(self, view: Tensor) -> Tensor:
        from vidssl.models.text import reverse_words

        return reverse_words(view)

    def other_valid(self, batch: dict, position: str) -> Tensor | None:
        return batch.get(f"text_valid_{position}")

    def encode_other(self, view: Tensor) -> Tensor:
        return self.text_encoder(view)


__all__ = ["GDTText", "GDTTextConfig"]
