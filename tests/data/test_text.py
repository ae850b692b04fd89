"""Captions and words: the embedded dataset's captions, captions.json in the manifest, the caption of a
clip, GDT's official word-vector files (a small synthetic pair in the same format) and text reversal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidssl.data.sampling import VideoShape, ViewsPlan, ViewSpec
from vidssl.data.text import CaptionedPlan, Vocabulary, caption_at, corpus_vocabulary, load_word_vectors, split_words
from vidssl.errors import DataError, UserError
from vidssl.models.text import GDTTextEncoder, reverse_words


def test_the_embedded_dataset_has_a_caption_per_clip_that_says_what_happens(demo_root, demo_manifest):
    from vidssl.data.demo.captions import DIGIT_WORDS, MOTION_PHRASES, clip_draws
    from vidssl.data.demo.dataset import DEMO_SIZES, DemoClip, render_clip

    table = json.loads((demo_root / "captions.json").read_text())
    assert len(table) == len(demo_manifest.records)
    for record in demo_manifest.records:
        (caption,) = record.annotations["captions"]
        assert caption["text"] == table[record.path] and caption["start"] == 0.0
        assert caption["end"] == pytest.approx(record.info.duration)
        assert MOTION_PHRASES[record.label_name] in caption["text"]
    # the caption's digit is the rendered one (the captions replay the clip's random draws)
    task = DemoClip(str(demo_root), 3, 2, 1, 0, DEMO_SIZES["tiny"])
    _, _, info = render_clip(task)
    digit, _, frames = clip_draws(task)
    assert (digit, frames) == (info["digit"], info["num_frames"])
    assert DIGIT_WORDS[digit] in table[task.relpath].split()


def test_captions_json_is_checked(demo_root, tmp_path):
    import shutil

    from vidssl.data.index import build_manifest

    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    first = sorted(json.loads((root / "captions.json").read_text()))[0]
    (root / "captions.json").write_text(json.dumps({first: [{"start": 2.0, "end": 1.0, "text": "x"}]}))
    with pytest.raises(DataError, match="caption 0"):
        build_manifest(root)


def test_words_vocabulary_and_the_caption_of_a_clip():
    assert split_words("A red Seven's moving-left!") == ["a", "red", "seven's", "moving", "left"]
    vocab = Vocabulary(["a", "left", "red"])
    assert vocab.tokens("A red seven moves left", max_words=4).tolist() == [1, 3, 2, 0]
    assert vocab.tokens("red " * 30, max_words=3).tolist() == [3, 3, 3]
    captions = [{"start": 0.0, "end": 2.0, "text": "first"}, {"start": 2.0, "end": 5.0, "text": "second"},
                {"start": 9.0, "end": 10.0, "text": "third"}]
    assert caption_at(captions, 1.5, 2.4) == "first" and caption_at(captions, 1.8, 3.0) == "second"
    assert caption_at(captions, 7.5, 8.0) == "third" and caption_at([], 0, 1) is None


def test_captioned_plan_gives_each_clip_its_caption():
    words = ["a", "blue", "red", "one", "two"]
    plan = CaptionedPlan(ViewsPlan([ViewSpec("clip_1", num_frames=4, stride=5), ViewSpec("clip_2", num_frames=4, stride=5)]),
                         Vocabulary(words), ["1", "2"], max_words=6)
    record = VideoShape(num_frames=250, fps=25.0, annotations={"captions": [
        {"start": 0.0, "end": 5.0, "text": "a red one"}, {"start": 5.0, "end": 10.0, "text": "a blue two"}]})
    rng = np.random.default_rng(0)
    for _ in range(20):
        sel = plan.sample(record, rng)
        for p in ("1", "2"):
            first = int(sel.start_frame + sel.views[f"clip_{p}"].frame_indices[0])  # the clip: frames first..first+15
            expected = "a red one" if 125 - first >= first + 16 - 125 else "a blue two"  # the larger overlap
            assert sel.extras[f"tokens_{p}"].tolist() == Vocabulary(words).tokens(expected, 6).tolist()
            assert bool(sel.extras[f"text_valid_{p}"])
    bare = plan.sample(VideoShape(num_frames=250, fps=25.0), rng)
    assert not bool(bare.extras["text_valid_1"]) and not bare.extras["tokens_1"].any()


def test_official_word_vector_files_load_frozen(tmp_path):
    """dict.npy (a unicode array, or an object array of str) + word2vec.pth (a tensor, row 0 = padding)."""
    words = np.array(["the", "dog", "runs"])
    vectors = torch.randn(4, 300)
    np.save(tmp_path / "dict.npy", words)
    torch.save(vectors, tmp_path / "word2vec.pth")
    vocab, table = load_word_vectors(tmp_path / "word2vec.pth", tmp_path / "dict.npy")
    assert vocab.tokens("The dog runs", 4).tolist() == [1, 2, 3, 0]
    torch.testing.assert_close(table, vectors)
    encoder = GDTTextEncoder(len(vocab), 300, 16, vectors=table)
    assert not encoder.word_embd.weight.requires_grad
    tokens = torch.from_numpy(vocab.tokens("dog runs", 4))[None]
    expected = torch.relu(encoder.fc1(vectors[[2, 3, 0, 0]])).max(dim=0).values
    torch.testing.assert_close(encoder(tokens)[0], expected)
    np.save(tmp_path / "objects.npy", np.array(["the", "dog", "runs"], dtype=object), allow_pickle=True)
    vocab2, _ = load_word_vectors(tmp_path / "word2vec.pth", tmp_path / "objects.npy")
    assert vocab2.words == ["the", "dog", "runs"]
    torch.save(vectors[1:], tmp_path / "no_padding.pth")  # one row per word: a zero padding row is added
    _, padded = load_word_vectors(tmp_path / "no_padding.pth", tmp_path / "dict.npy")
    assert float(padded[0].abs().sum()) == 0.0 and padded.shape == (4, 300)
    torch.save(torch.randn(9, 300), tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="rows for the 3 words"):
        load_word_vectors(tmp_path / "wrong.pth", tmp_path / "dict.npy")


def test_text_reversal_reverses_the_words_and_keeps_the_padding():
    tokens = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    assert reverse_words(tokens).tolist() == [[7, 6, 5, 0, 0], [5, 4, 3, 2, 1], [0, 0, 0, 0, 0]]
    encoder = GDTTextEncoder(8, 4, 6)
    torch.testing.assert_close(encoder(reverse_words(tokens)), encoder(tokens))  # max over words: order-free


def test_corpus_vocabulary(demo_manifest):
    words = corpus_vocabulary(demo_manifest)
    assert words == sorted(set(words)) and {"a", "bounces", "floor", "spins"} <= set(words)
